"""Everything about files on disk: run folders, masks and reports, exclusive CLI outputs, resumable
checkpoints, training checkpoints, content hashes of the cached defaults, allowed roots."""
