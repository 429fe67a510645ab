"""The core every layer builds on: declared options, registries, plugins, records of injected components, errors,
files and checkpoint compatibility. It imports nothing else of this package."""
