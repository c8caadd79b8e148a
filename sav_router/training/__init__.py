"""Training: TrainConfig (the one source of settings), the fine-tuning estimator, annotation files -> bundle, the SageMaker job contract."""
