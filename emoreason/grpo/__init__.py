"""GRPO on video: TRL's GRPOTrainer with real video tensors through rollouts and the log-prob forward."""
