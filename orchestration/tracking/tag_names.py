"""The names of the tags this project sets on MLflow runs and model versions, in one place: the runner
and the callback write them, the report, the terminal commands and deploy read them."""

ROLE = "paradis.role"  # "study", "trial" or "deploy"
STUDY = "paradis.study"  # a study run's study name
TRIAL_ID = "paradis.trial_id"  # a trial run's Tune trial id
METHOD = "paradis.method"  # a trial's method as the paper names it ("ParaDiS Wide IPKD")
SEARCH = "paradis.search"  # a trial's searched values (JSON); on a study run, the search kind
ERROR = "paradis.error"  # why a run failed
ENDED = "paradis.ended"  # what ended a trial (finished, ASHA, budget, failure, interrupted); on a study, its budget
EPOCHS = "paradis.epochs"  # the epochs a trial trained
RESTARTS = "paradis.restarts"  # how often a trial was restarted after a failure
NODE_IP = "paradis.node_ip"  # the node a trial trained on
EXPERIMENT_DIR = "paradis.experiment_dir"  # a study's Ray results folder (what --resume restores)
GIT_COMMIT = "paradis.git_commit"
OPTUNA_STORAGE = "paradis.optuna_storage"
OPTUNA_STUDY = "paradis.optuna_study"
ARTIFACT_PATH = "paradis.artifact_path"  # a model version's folder within its run
SOURCE_RUN = "paradis.source_run"  # the trial run a deployed export was made from
SWITCH = "paradis.switch"
MANIFEST_SHA256 = "paradis.manifest_sha256"  # a registered export's manifest digest
