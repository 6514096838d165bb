"""Settings of ximilar_gw: spec defaults, the .env is read, bad or missing values are named."""

from __future__ import annotations

import pytest
import yaml

from unde_common.settings import SettingsError
from unde_testkit.loaders import repo_root
from unde_testkit.testing import EnvWriter, EnvWriterFactory
from ximilar_gw.settings import XimilarGwSettings


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(XimilarGwSettings)


def test_defaults_follow_the_spec(write_env: EnvWriter) -> None:
    write_env()
    settings = XimilarGwSettings.load()
    assert settings.app_name == "ximilar_gw"
    assert (settings.port, settings.workers) == (8001, 4)
    # feature flags, spec 01 §19b
    assert (settings.search_backend, settings.confidence_threshold, settings.margin) == (
        "conditional",
        0.80,
        0.10,
    )


def test_reads_the_env_file(write_env: EnvWriter) -> None:
    write_env({"XIMILAR_API_TOKEN": "tok", "XIMILAR_COLLECTION_ID": "c", "SEARCH_BACKEND": "ximilar"})
    settings = XimilarGwSettings.load()
    assert settings.search_backend == "ximilar"
    assert settings.port == 8001


def test_rejects_a_bad_value_naming_the_field(write_env: EnvWriter) -> None:
    write_env({"CONFIDENCE_THRESHOLD": "1.5"})
    with pytest.raises(SettingsError) as info:
        XimilarGwSettings.load()
    assert list(info.value.problems) == ["CONFIDENCE_THRESHOLD"]
    assert "CONFIDENCE_THRESHOLD" in str(info.value)


def test_missing_secrets_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        XimilarGwSettings.load()
    assert set(info.value.problems) == set(write_env.required)


def test_both_roles_render_one_ximilar_service() -> None:
    """ximilar-sync inserts into the service ximilar-gw searches (a collection belongs to one
    service): one group_vars value rendered by both roles, equal to both settings defaults."""
    from ximilar_sync.settings import XimilarSyncSettings

    root = repo_root()
    shared = yaml.safe_load((root / "group_vars/all/ximilar.yml").read_text())["unde_ximilar_service_path"]
    assert shared == XimilarGwSettings.model_fields["ximilar_service_path"].default
    assert shared == XimilarSyncSettings.model_fields["ximilar_service_path"].default
    for app in ("ximilar_sync", "ximilar_gw"):
        defaults = yaml.safe_load((root / f"roles/{app}/defaults/main.yml").read_text())
        assert defaults[f"{app}_service_path"] == "{{ unde_ximilar_service_path }}", app
        env = yaml.safe_load((root / f"roles/{app}/vars/main.yml").read_text())[f"__{app}_env"]
        assert env["XIMILAR_SERVICE_PATH"] == f"{{{{ {app}_service_path }}}}", app
