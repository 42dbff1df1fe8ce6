"""Qt-free, torch-free core: parameters, jobs, events, image files and metadata, paths."""
