"""Built-in image datasets, convolutional energies and FID (filled in by the images work)."""

from ebmbench import hookimpl


@hookimpl
def ebmbench_register_datasets(register):
    pass
