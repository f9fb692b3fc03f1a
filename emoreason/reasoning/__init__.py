"""Response format, prompt builder and the total response parser."""

from emoreason.reasoning.format import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    SECTION_NAMES,
    THINK_CLOSE,
    THINK_OPEN,
    AUObservation,
    ResponseContent,
    answer_json_schema,
    default_conclusion,
    default_interpretation,
    format_response,
    json_response_format,
    render_observations,
)
from emoreason.reasoning.parser import ParsedResponse, parse_response
from emoreason.reasoning.prompts import SYSTEM_PROMPT, build_instruction, build_messages, to_openai_messages

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "SECTION_NAMES",
    "SYSTEM_PROMPT",
    "THINK_CLOSE",
    "THINK_OPEN",
    "AUObservation",
    "ParsedResponse",
    "ResponseContent",
    "answer_json_schema",
    "build_instruction",
    "build_messages",
    "default_conclusion",
    "default_interpretation",
    "format_response",
    "json_response_format",
    "parse_response",
    "render_observations",
    "to_openai_messages",
]
