// Handwritten digits (UCI optical recognition of handwritten digits, 8x8 images): an MLP classifier.
// Run: regimen train training_config/digits.jsonnet -s runs/digits
local seed = 13;
local hidden = 128;

{
  random_seed: seed,
  numpy_seed: seed,
  pytorch_seed: seed,
  dataset_reader: { type: 'csv', label_column: 'label' },
  train_data_path: 'data/digits/train.csv',
  validation_data_path: 'data/digits/validation.csv',
  test_data_path: 'data/digits/test.csv',
  evaluate_on_test: true,
  data_loader: { batch_size: 32, shuffle: true },
  model: {
    type: 'mlp_classifier',
    input_dim: 64,
    hidden_dims: [hidden, hidden],
    num_classes: 10,
    dropout: 0.2,
  },
  trainer: {
    num_epochs: 30,
    patience: 5,
    validation_metric: '+accuracy',
    optimizer: { type: 'adamw', lr: 3e-3, weight_decay: 1e-4 },
    learning_rate_scheduler: { type: 'cosine', t_initial: 30 },
    moving_average: { type: 'exponential', decay: 0.99 },
    callbacks: ['tensorboard'],
  },
}
