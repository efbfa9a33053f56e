"""The HTTPS server and test CA of the integration tests, for the frozen app's deep-link test."""

from tests.integration.conftest import (  # noqa: F401 - fixtures
    _ca_file, _https_server_session, ca_bundle, https_server, test_ca,
)
