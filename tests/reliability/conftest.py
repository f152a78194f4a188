from tests.orchestration.conftest import study_env  # noqa: F401  (the same isolated study environment)
