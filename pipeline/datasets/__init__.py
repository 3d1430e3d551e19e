"""Readers and writers of the real on-disk formats (LAION shards, webdataset sets, CelebA,
ImageNet val, UnlearnCanvas). The tiny world writes into these formats; real data is read by the
same code."""
