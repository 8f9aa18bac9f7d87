"""Wide functions take their settings as one dataclass (reward_circuits.options): the old calls keep working."""

from dataclasses import KW_ONLY, dataclass

import pytest

from reward_circuits.options import options_of


@dataclass
class _Opts:
    a: int = 1
    b: str = "x"
    _: KW_ONLY
    c: float = 0.5


def test_keywords_positions_and_an_instance_resolve_alike():
    assert options_of(_Opts, (), {}, where="f") == _Opts()
    assert options_of(_Opts, (2,), {"c": 1.0}, where="f") == _Opts(2, "x", c=1.0)
    assert options_of(_Opts, (), {"options": _Opts(3), "b": "y"}, where="f") == _Opts(3, "y")
    assert options_of(_Opts, (4, "z"), {}, where="f", order=("a", "b")) == _Opts(4, "z")


def test_bad_calls_raise_type_errors_like_a_signature():
    with pytest.raises(TypeError, match="unexpected keyword argument 'd'"):
        options_of(_Opts, (), {"d": 1}, where="f")
    with pytest.raises(TypeError, match="at most 2 positional"):
        options_of(_Opts, (1, "x", 0.5), {}, where="f")
    with pytest.raises(TypeError, match="multiple values"):
        options_of(_Opts, (1,), {"a": 2}, where="f")
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        options_of(_Opts, (), {"c": 2.0}, where="f", names=("a", "b"))
    with pytest.raises(TypeError, match="takes a _Opts"):
        options_of(_Opts, (), {"options": {"a": 1}}, where="f")


@pytest.mark.parametrize("name", ["ablation_study", "dose_response", "steering_study", "confidence_study"])
def test_studies_reject_unknown_options(name):
    import reward_circuits.analysis as analysis

    args = {"ablation_study": (None,) * 4, "dose_response": (None,) * 5, "steering_study": (None,) * 4,
            "confidence_study": (None,) * 6}[name]
    with pytest.raises(TypeError, match=f"{name}\\(\\) got an unexpected keyword argument 'n_draws'"):
        getattr(analysis, name)(*args, n_draws=3)


def test_dose_conditions_takes_only_the_condition_options():
    from reward_circuits.analysis import dose_conditions

    with pytest.raises(TypeError, match="unexpected keyword argument 'config'"):
        dose_conditions([0.0, 1.0], "blocks.0.hook_resid_post", config=None)
