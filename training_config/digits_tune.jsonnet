// The digits classifier of digits.jsonnet with its learning rate, width and dropout left to a search:
//   regimen tune training_config/digits_tune.jsonnet training_config/digits_tune_hparams.json \
//     --optuna-param-path training_config/digits_tune_optuna.json -s runs/digits_tune --n-trials 8 \
//     --metrics best_validation_accuracy --direction maximize
// Each value is an external variable (a string), set by `regimen tune` for each trial, as allennlp-optuna does.
local lr = std.parseJson(std.extVar('lr'));
local hidden = std.parseInt(std.extVar('hidden'));
local dropout = std.parseJson(std.extVar('dropout'));
local seed = 13;

{
  random_seed: seed,
  numpy_seed: seed,
  pytorch_seed: seed,
  dataset_reader: { type: 'csv', label_column: 'label' },
  train_data_path: 'data/digits/train.csv',
  validation_data_path: 'data/digits/validation.csv',
  data_loader: { batch_size: 32, shuffle: true },
  model: {
    type: 'mlp_classifier',
    input_dim: 64,
    hidden_dims: [hidden, hidden],
    num_classes: 10,
    dropout: dropout,
  },
  trainer: {
    num_epochs: 12,
    validation_metric: '+accuracy',
    optimizer: { type: 'adamw', lr: lr, weight_decay: 1e-4 },
    learning_rate_scheduler: { type: 'cosine', t_initial: 12 },
    progress_bar: false,
    // Reports best_validation_accuracy after each epoch; stops a trial the median pruner rejects.
    callbacks: [{ type: 'optuna_pruner' }],
  },
}
