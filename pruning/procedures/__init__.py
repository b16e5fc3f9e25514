"""Methods from the seed papers, each registered under its own name (family ``"seed"``).

* ``randomized`` - randomized mask generation and selection (Li et al., EMNLP Findings 2023);
* ``mgpp`` and its baseline ``gmp`` - mixture Gaussian prior pruning (Zhang, Sun, Liang)
  and plain gradual magnitude pruning on the same schedule;
* ``sds`` - sparse-dense-sparse (Li et al. 2024).

Each module keeps the paper's arithmetic in small pure functions and the model-level
driver in small functions of one step each; :mod:`pruning.procedures.training` holds the fine-tuning
loop the first two share. Each method's ``steps_view`` says how the app shows its steps.
Each file registers its methods when :mod:`pruning.catalog` imports it (no list here).
"""
