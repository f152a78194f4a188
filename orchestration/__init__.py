"""Study orchestration: Ray Tune and Ray Train for execution, Optuna for search, MLflow for tracking."""
