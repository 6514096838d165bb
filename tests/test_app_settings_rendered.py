"""Settings the roles must render into an app's .env, rendered here with Ansible's templar from
the roles' defaults and group_vars/all, then read back by the app's own settings classes:

* every service that fetches images by URL (embedder, ximilar-gw, llm-reranker) renders all of the
  safe fetcher's settings (``unde_common.settings.ImageFetchSettings``: host allow-list, schemes,
  allowed networks, redirects, byte and pixel limits) from the one place,
  group_vars/all/images.yml, whose values are the settings' defaults;
* the context agent renders its weather cache cell (``WEATHER_GRID_DEG``);
* photo_downloader renders its download policy (any public host, the fetchers' allowed networks).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.plugins.loader import init_plugin_loader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]
from support import REPO
from unde_common.images import FetchPolicy
from unde_common.settings import ImageFetchSettings, UndeSettings

GROUP_VARS = REPO / "group_vars" / "all"
#: the fields ImageFetchSettings adds: each must reach the .env of every image-fetching service
IMAGE_FIELDS = sorted(set(ImageFetchSettings.model_fields) - set(UndeSettings.model_fields))
IMAGE_ROLES = ["embedder", "ximilar_gw", "llm_reranker"]


@functools.cache
def _loader() -> DataLoader:
    init_plugin_loader()
    return DataLoader()


def _rendered_env(role: str, keys: list[str], **overrides: Any) -> dict[str, str]:
    """``keys`` of the role's .env mapping (vars/main.yml ``__<role>_env``), templated with
    group_vars/all, the role's defaults and ``overrides`` (inventory or play variables)."""
    loader = _loader()
    data: dict[str, Any] = {}
    for path in sorted(GROUP_VARS.glob("*.yml")):
        data.update(loader.load_from_file(str(path), trusted_as_template=True) or {})
    base = REPO / "roles" / role
    data.update(loader.load_from_file(str(base / "defaults" / "main.yml"), trusted_as_template=True))
    data.update(overrides)
    env = yaml.safe_load((base / "vars" / "main.yml").read_text())[f"__{role}_env"]
    missing = [k for k in keys if k not in env]
    assert not missing, f"roles/{role} does not render {missing}"
    templar = Templar(loader=loader, variables=data)
    return {k: str(templar.template(trust_as_template(str(env[k])))) for k in keys}


def test_image_fields_are_found() -> None:
    assert {"image_fetch_hosts", "image_fetch_allow_networks", "max_image_pixels"} <= set(IMAGE_FIELDS)


@pytest.mark.parametrize("role", IMAGE_ROLES)
def test_image_fetching_roles_render_every_fetch_setting(role: str) -> None:
    env = _rendered_env(role, [f.upper() for f in IMAGE_FIELDS])
    settings = ImageFetchSettings.model_validate({k.lower(): v for k, v in env.items()})
    # production: https to Object Storage only, nothing non-public, the settings' limits
    assert FetchPolicy.from_settings(settings) == FetchPolicy()
    assert settings.image_fetch_hosts == ["hel1.your-objectstorage.com"]
    assert settings.image_fetch_allow_networks == [] and settings.image_fetch_schemes == ["https"]


def test_group_vars_are_the_settings_defaults() -> None:
    images = yaml.safe_load((GROUP_VARS / "images.yml").read_text())
    defaults = ImageFetchSettings.model_construct()
    assert images["unde_image_fetch_max_redirects"] == defaults.image_fetch_max_redirects
    assert images["unde_image_max_bytes"] == defaults.max_image_bytes
    assert images["unde_image_max_pixels"] == defaults.max_image_pixels
    assert images["unde_image_fetch_schemes"] == ",".join(defaults.image_fetch_schemes)
    assert images["unde_image_fetch_allow_networks"] == ",".join(defaults.image_fetch_allow_networks)


@pytest.mark.parametrize("role", IMAGE_ROLES)
def test_the_allow_list_is_set_once_for_all_roles(role: str) -> None:
    """A brand CDN added in group_vars reaches every fetching service; a role override still wins."""
    cdn = {"unde_image_fetch_hosts": "hel1.your-objectstorage.com,*.static.example-brand.com"}
    env = _rendered_env(role, ["IMAGE_FETCH_HOSTS"], **cdn)
    assert env["IMAGE_FETCH_HOSTS"] == cdn["unde_image_fetch_hosts"]
    lab = _rendered_env(role, ["IMAGE_FETCH_HOSTS"], **{f"{role}_image_fetch_hosts": "198.18.0.1"})
    assert lab["IMAGE_FETCH_HOSTS"] == "198.18.0.1"


def test_context_agent_renders_its_weather_cell() -> None:
    from context_agent.settings import ContextAgentSettings

    env = _rendered_env("context_agent", ["WEATHER_GRID_DEG"])
    default = ContextAgentSettings.model_fields["weather_grid_deg"].default
    assert float(env["WEATHER_GRID_DEG"]) == default
    coarse = _rendered_env("context_agent", ["WEATHER_GRID_DEG"], context_agent_weather_grid_deg=0.25)
    assert float(coarse["WEATHER_GRID_DEG"]) == 0.25


def test_photo_downloader_renders_its_download_policy() -> None:
    """Any public host by default (the brands' CDNs), the fetchers' one allowed-networks setting."""
    from photo_downloader.settings import PhotoDownloaderSettings

    keys = ["DOWNLOAD_HOSTS", "DOWNLOAD_ALLOW_NETWORKS"]
    env = _rendered_env("photo_downloader", keys)
    fields = {k.lower(): v for k, v in env.items()}
    parsed = PhotoDownloaderSettings.model_validate({"s3_access_key": "k", "s3_secret_key": "s", **fields})
    assert parsed.download_hosts == [] and parsed.download_allow_networks == []
    lab = _rendered_env("photo_downloader", keys, unde_image_fetch_allow_networks="198.18.0.0/15")
    assert lab["DOWNLOAD_ALLOW_NETWORKS"] == "198.18.0.0/15"
