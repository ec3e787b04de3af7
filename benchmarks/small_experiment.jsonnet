// The small experiment whose `regimen train --dry-run` start-up time benchmarks/startup.py measures.
// Paths are relative to the repository root, where the benchmark runs the command.
{
  dataset_reader: { type: 'csv', label_column: 'label' },
  train_data_path: 'fixtures/data/classification.csv',
  validation_data_path: 'fixtures/data/classification.csv',
  data_loader: { batch_size: 4 },
  model: { type: 'mlp_classifier', input_dim: 3, hidden_dims: [8], num_classes: 3 },
  trainer: {
    num_epochs: 1,
    optimizer: { type: 'adamw', lr: 0.01 },
    progress_bar: false,
    cuda_device: -1,
  },
}
