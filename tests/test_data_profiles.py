"""Profiles: what counts as missing, and templates that render them."""

import numpy as np
import pandas as pd

from cuma.data.profiles import KEY_VALUE, WVB_PERSONA, Profile, ProfileTemplate


def test_only_none_nan_and_blank_values_are_missing():
    answers = Profile(religion="None", note="nan", code="<NA>", age=0)
    assert dict(answers) == {"religion": "None", "note": "nan", "code": "<NA>", "age": "0"}
    gaps = Profile(a=None, b=float("nan"), c=np.float32("nan"), d=pd.NA, e="", f="  ")
    assert set(gaps.values()) == {None}
    assert KEY_VALUE.render(Profile(religion="None", gender=pd.NA)) == "Religion: None"


def test_template_is_immutable_and_hashable():
    as_mapping = ProfileTemplate(parts={"age": "aged {value}"}, sep="; ")
    as_pairs = ProfileTemplate(parts=(("age", "aged {value}"),), sep="; ")
    assert as_mapping == as_pairs and hash(as_mapping) == hash(as_pairs)
    assert len({as_mapping, as_pairs, WVB_PERSONA}) == 2
    assert as_mapping.render({"age": 30, "sex": "f"}) == "aged 30; Sex: f"
    assert WVB_PERSONA.render({"country": "Chile", "religion": None}) == (
        "You are a person from Chile, religion: unknown."
    )
