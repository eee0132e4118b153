"""Meta-tests: every protocol setting (ebmbench.protocol_settings) reaches every place a user
sets it or a run records it, with the table's default, and its legacy rule adds nothing to a
run's keys (datasette-style: the table is the one list, these tests hold the code to it)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import ebmbench
from ebmbench import protocol_settings
from ebmbench.averaging import WEIGHT_AVERAGES
from ebmbench.cli import cli
from ebmbench.early_stopping import CHECKPOINT_RULES
from ebmbench.grid import RunSpec, Selection, expand
from ebmbench.plugins import get_plugin_manager
from ebmbench.schedules import LR_SCHEDULES
from ebmbench.tuning import plan_studies

SETTINGS = protocol_settings.SETTINGS
CHOICES = {"lr_schedule": LR_SCHEDULES, "checkpoint": CHECKPOINT_RULES,
           "weight_average": WEIGHT_AVERAGES}


def test_the_table_names_every_setting_with_its_choices():
    assert set(protocol_settings.NAMES) == set(CHOICES)
    for setting in SETTINGS:
        assert {setting.default, setting.legacy} <= set(CHOICES[setting.name])


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_entry_point_takes_the_setting_with_the_tables_default(setting):
    fields = {f.name: f for f in dataclasses.fields(Selection)}
    assert fields[setting.name].default == setting.default
    for entry in (ebmbench.run, ebmbench.train):
        assert inspect.signature(entry).parameters[setting.name].default == setting.default
    run_options = {p.name: p for p in cli.commands["run"].params}
    assert run_options[setting.name].default == setting.default
    # A RunSpec made without it (older model files, hand-made specs) runs the legacy rule.
    spec_fields = {f.name: f for f in dataclasses.fields(RunSpec)}
    assert spec_fields[setting.name].default == setting.legacy


def _one_spec(**settings):
    (spec,), _ = expand(Selection(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                                  datasets=["banana"], metrics=[], budget="smoke", **settings),
                        get_plugin_manager())
    return spec


def _keys(spec):
    (study,) = plan_studies([spec], get_plugin_manager(), fixed=set())
    return spec.run_id, spec.train_key, study


def test_the_legacy_rules_add_nothing_to_any_key_and_every_other_value_changes_them(fresh_plugins):
    legacy = _one_spec(**protocol_settings.LEGACY)
    assert protocol_settings.recorded(legacy) == {}
    seen = {_keys(legacy)}
    for setting in SETTINGS:
        for value in CHOICES[setting.name]:
            if value == setting.legacy:
                continue
            keys = _keys(_one_spec(**(protocol_settings.LEGACY | {setting.name: value})))
            assert all(k not in {old[i] for old in seen} for i, k in enumerate(keys)), (setting, value)
            seen.add(keys)


def test_a_run_records_and_is_labelled_by_its_settings(fresh_plugins):
    spec = _one_spec(**(protocol_settings.DEFAULTS | {"lr_schedule": "cosine"}))
    assert protocol_settings.labelled(spec) == {"lr_schedule": "cosine"}
    assert protocol_settings.from_record(protocol_settings.recorded(spec)) == \
        protocol_settings.settings_of(spec)
