"""The data package: dataset readers, batch samplers, collate and the data loader that turns files into batches."""

from regimen.data.batch_sampler import BatchSampler, BucketBatchSampler
from regimen.data.cached_files import cached_data_path
from regimen.data.collate import collate
from regimen.data.data_loader import DataLoader, DefaultDataLoader
from regimen.data.dataset_reader import DatasetReader, Instance, open_data_file
from regimen.data.readers import CsvReader, JsonLinesReader

__all__ = [
    "BatchSampler",
    "BucketBatchSampler",
    "CsvReader",
    "DataLoader",
    "DatasetReader",
    "DefaultDataLoader",
    "Instance",
    "JsonLinesReader",
    "cached_data_path",
    "collate",
    "open_data_file",
]
