"""The data package: dataset readers, batch samplers, collate and the data loader that turns files into batches."""

from regimen.data.batch_sampler import BatchSampler, BucketBatchSampler
from regimen.data.cached_files import cached_data_path
from regimen.data.collate import collate
from regimen.data.data_loader import DataLoader, DefaultDataLoader
from regimen.data.dataset_reader import DatasetReader, Instance, open_data_file
from regimen.data.huggingface import HuggingFaceReader
from regimen.data.image_folder import ImageFolder, image_to_tensor
from regimen.data.readers import CsvReader, JsonLinesReader
from regimen.data.torch_dataset import TorchDatasetReader

__all__ = [
    "BatchSampler",
    "BucketBatchSampler",
    "CsvReader",
    "DataLoader",
    "DatasetReader",
    "DefaultDataLoader",
    "HuggingFaceReader",
    "ImageFolder",
    "Instance",
    "JsonLinesReader",
    "TorchDatasetReader",
    "cached_data_path",
    "collate",
    "image_to_tensor",
    "open_data_file",
]
