// Shapes (data/shapes: 16x16 grayscale PNGs of circles, crosses, squares and triangles): a small CNN.
// The images are read by a torch Dataset (regimen's ImageFolder) through the torch_dataset reader: each data
// path is a folder with one sub-folder per class, passed to the dataset as its `root`.
// Run: regimen train training_config/shapes.jsonnet -s runs/shapes  (needs Pillow: pip install 'regimen[images]')
local seed = 13;
local epochs = 30;

{
  random_seed: seed,
  numpy_seed: seed,
  pytorch_seed: seed,
  dataset_reader: {
    type: 'torch_dataset',
    dataset: 'regimen.data.image_folder.ImageFolder',
    kwargs: { mode: 'L' },  // grayscale: one channel
    data_path_argument: 'root',
  },
  train_data_path: 'data/shapes/train',
  validation_data_path: 'data/shapes/validation',
  test_data_path: 'data/shapes/test',
  evaluate_on_test: true,
  data_loader: { batch_size: 16, shuffle: true },
  model: {
    type: 'cnn_classifier',
    in_channels: 1,
    num_classes: 4,
    channels: [16, 32],
    kernel_size: 3,
    pooling: 'max',
  },
  trainer: {
    num_epochs: epochs,
    validation_metric: '+accuracy',
    optimizer: { type: 'adam', lr: 0.01 },
    learning_rate_scheduler: { type: 'cosine', t_initial: epochs },
  },
}
