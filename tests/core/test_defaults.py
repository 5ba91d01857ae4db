"""One home for every method's training defaults: ``Objective.params`` (asl_core/objectives.py).
TrainConfig, the CLI flags and the search grids read them from there; these tests fail as soon
as a second place states a default of its own (fp_beta was once 9.0, 0.0 and 1.0 in three
places). The public loss classes keep the *papers'* defaults, stated as such."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from asl_core.experiment.run import FIXED_ROWS
from asl_core.experiment.search import (BASE_CONFIGS, SEARCH_ALTERNATIVES, SEARCH_DESIGNS, SEARCH_GRIDS, axis_default,
                                        grid_points)
from asl_core.losses import ASLoss, FocusingPickingLoss
from asl_core.objectives import get_objective, method_names
from asl_core.training import TrainConfig
from asl_core.training.cli import build_parser, config_from_args, method_hyperparams

COMMON = {"lr", "weight_decay"}  # optimiser settings some grids tune (TrainConfig's own fields)


def all_params() -> set[str]:
    return {k for m in method_names() for k in get_objective(m).params if k != "layers"}


def test_trainconfig_states_no_method_default_of_its_own():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    shared = all_params() & set(fields)
    assert shared, "TrainConfig should still accept the method hyperparameters by name"
    assert {name: fields[name].default for name in shared} == {name: None for name in shared}


@pytest.mark.parametrize("method", method_names())
def test_a_plain_config_trains_with_the_registry_defaults(method):
    cls = get_objective(method)
    params = TrainConfig(method=method, arch="mnist_cnn").objective_params()
    assert {k: v for k, v in params.items() if k != "layers"} == {k: v for k, v in cls.params.items() if k != "layers"}
    recorded = TrainConfig(method=method, arch="mnist_cnn").hyperparams()
    assert all(recorded[k] == v for k, v in {**cls.params, **cls.fixed}.items() if k != "layers")


def test_cli_flags_are_generated_from_the_registry_and_default_to_it():
    parser = build_parser()
    args = parser.parse_args(["--out", "x"])
    for name in all_params():
        assert getattr(args, name) is None, f"--{name.replace('_', '-')} states a default of its own"
    helps = {a.dest: a.help for a in parser._actions}
    for name, defaults in method_hyperparams().items():
        assert all(repr(v) in helps[name] for v in defaults.values())
    for method in method_names():
        config = config_from_args(parser.parse_args(["--out", "x", "--method", method, "--arch", "mnist_cnn"]))
        assert config.objective_params() == TrainConfig(method=method, arch="mnist_cnn").objective_params()
    # a flag that is given reaches the method that has it, and only that one
    assert config_from_args(parser.parse_args(["--out", "x", "--method", "logit-adjusted", "--la-tau", "2"])) \
        .objective_params() == {"la_tau": 2.0}
    assert config_from_args(parser.parse_args(["--out", "x", "--method", "clonal", "--fp-beta", "3"])).objective_params()["fp_beta"] == 3.0


def test_search_grids_start_at_the_registry_default_and_every_axis_is_known():
    for method, grid in SEARCH_GRIDS.items():
        params = get_objective(method).params
        for axis, values in grid.items():
            assert axis in params or axis in COMMON, f"{method}: {axis} is not a hyperparameter of the method"
            assert values[0] == axis_default(method, axis), f"{method}.{axis} does not start at its default"
            expected = params[axis] if axis in params else getattr(TrainConfig, axis)
            assert values[0] == expected
            assert len(set(values)) == len(values)
        assert set(grid) == set(SEARCH_ALTERNATIVES[method])


def test_every_tuned_row_has_the_same_budget():
    sizes = {m: len(grid_points(g, SEARCH_DESIGNS.get(m, "product"))) for m, g in SEARCH_GRIDS.items()}
    assert set(sizes.values()) == {BASE_CONFIGS}, sizes
    assert {"ce-tuned", "conf-penalty", "logit-adjusted", "asloss", "clonal", "asloss+la", "clonal+la"} <= set(SEARCH_GRIDS)


def test_the_loss_classes_keep_the_papers_defaults_not_the_training_ones():
    """ASLoss() and FocusingPickingLoss() are the papers' plain forms (the asloss-paper and
    clonal-paper rows); the tuned training defaults live only in the registry."""
    asl = inspect.signature(ASLoss).parameters
    paper = FIXED_ROWS["asloss-paper"][1]("mnist_cnn")
    assert {k: asl[k].default for k in ("distance", "radius", "lambda_agg", "lambda_sep", "lambda_scope")} == \
        {k: paper[k] for k in ("distance", "radius", "lambda_agg", "lambda_sep", "lambda_scope")}
    fp = inspect.signature(FocusingPickingLoss).parameters
    clonal_paper = FIXED_ROWS["clonal-paper"][1]("mnist_cnn")
    assert (fp["alpha"].default, fp["beta"].default) == (clonal_paper["fp_alpha"], clonal_paper["fp_beta"])
    # eps and T are METHODS.md's values, shared by the class and the registry
    clonal = get_objective("clonal").params
    assert (fp["eps"].default, fp["temperature"].default) == (clonal["fp_eps"], clonal["fp_temperature"])


def test_variants_derive_their_defaults_from_the_method_they_vary():
    for name in ("asloss+la", "asloss-scope-only", "asloss-no-scope"):
        params = get_objective(name).params
        assert all(params[k] == v for k, v in get_objective("asloss").params.items() if k in params)
    for name in ("clonal+la", "clonal-no-neg"):
        params = get_objective(name).params
        assert all(params[k] == v for k, v in get_objective("clonal").params.items() if k in params)
    for name in ("asloss+la", "clonal+la"):
        assert get_objective(name).params["la_tau"] == get_objective("logit-adjusted").params["la_tau"]
