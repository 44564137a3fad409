"""The quadrature rules: Captum's nodes and weights, the paper's named setting, and the checks."""

import pytest
from captum.attr._utils.approximation_methods import approximation_parameters

import captum_neuronpath as cnp
from captum_neuronpath._utils.quadrature import DEFAULT_METHOD, DEFAULT_N_STEPS, quadrature


@pytest.mark.parametrize("n_steps,method", [(DEFAULT_N_STEPS, DEFAULT_METHOD), (20, "riemann_left"), (5, "riemann_trapezoid")])
def test_the_rule_is_captums(n_steps, method):
    step_sizes, alphas = approximation_parameters(method)
    rule = quadrature(n_steps, method)
    assert (rule.n_steps, rule.method) == (n_steps, method)
    assert rule.step_sizes == step_sizes(n_steps) and rule.alphas == alphas(n_steps)


def test_the_paper_setting_is_one_read_only_value():
    assert dict(cnp.PAPER_QUADRATURE) == {"n_steps": 20, "method": "riemann_left"}
    with pytest.raises(TypeError):
        cnp.PAPER_QUADRATURE["n_steps"] = 3
    assert quadrature(**cnp.PAPER_QUADRATURE).alphas == pytest.approx([k / 20 for k in range(20)], abs=1e-7)


@pytest.mark.parametrize(
    "n_steps,method,error,text",
    [
        (0, "gausslegendre", ValueError, "n_steps"),
        (2.5, "gausslegendre", TypeError, "n_steps"),
        (3, "simpson", ValueError, r"method must be one of .*gausslegendre.*'simpson'"),
        (1, "riemann_left", ValueError, r"n_steps=1 is too few for method='riemann_left'"),
    ],
    ids=["no nodes", "not an int", "unknown method", "one Riemann node"],
)
def test_bad_rules_name_the_argument(n_steps, method, error, text):
    with pytest.raises(error, match=text):
        quadrature(n_steps, method)
