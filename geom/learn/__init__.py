"""Learning with sliced losses: the models and training loops built on :mod:`geom.losses`.

Each submodule is imported on its own (``from geom.learn import autoencoder``), so ``import geom`` stays
free of scikit-learn and POT:

- :mod:`geom.learn.autoencoder`: a PointNet encoder with an MLP decoder for point clouds, its training
  step and its evaluation (Chamfer, exact EMD on subsamples, SW, a latent linear probe);
- :mod:`geom.learn.wae`: a Wasserstein autoencoder with a sliced penalty on the latents;
- :mod:`geom.learn.adapt`: unsupervised domain adaptation by the sliced Wasserstein discrepancy;
- :mod:`geom.learn.pacbayes`: slice distributions learned by maximising a PAC-Bayes bound.

Every loss is one of :mod:`geom.losses`, so every value goes through the one sliced estimator.
"""
