"""Estimators for the five types of RNN, following scikit-learn's conventions.

    one-to-one, many-to-one   SequenceClassifier, SequenceRegressor   (the final state -> a Dense head)
    many-to-many, Tx = Ty     SequenceTagger                          (a label per step)
    one-to-many               CharLanguageModel                       (fit(text), generate(n_chars))
    many-to-many, Tx != Ty    Seq2Seq                                 (encoder-decoder, attention)

The constructor takes only hyper-parameters; `fit` learns, then `predict`, `predict_proba`,
`score`; `get_params` / `set_params` make `sklearn.base.clone`, `cross_val_score` and grid searches
work (scikit-learn itself is optional). Every estimator has `cell="gru"` or `"rnn"`, `hidden_size`,
`num_layers`, `random_state`, `verbose` (a progress bar with the loss and the throughput on stderr),
`dtype` and `backend` (passed to the recurrent layers), and saves to / loads from a NumPy .npz file
(`save(path)`, `Estimator.load(path)`; no pickled code).

Inputs (X, or Seq2Seq's sources) may be
- a 3-D array (N, T, I): N sequences of T steps of I features;
- a 2-D float array (N, I): one step each (one-to-one, a plain feed-forward problem);
- a 2-D integer array (N, T): token ids, embedded (`embedding_dim`);
- a list of N variable-length sequences: (T_i, I) float arrays, 1-D float arrays (T_i,) (one
  feature), 1-D integer arrays or lists (token ids), or strings / lists of strings (tokens with a
  vocabulary learnt by fit; unknown ones at predict time share one id).
Lengths are taken from the sequences; batches are padded and the layers skip the padding.
Float features are standardised (per feature, over the valid steps) unless `standardize=False`.

One training loop serves every estimator (`_Training._train`, in _training.py): mini-batches in random order,
Adam or SGD with momentum, gradient clipping by global norm (`clip_norm`) and by value
(`clip_value`), stopping when the loss stops improving by `tol` for `n_iter_no_change` epochs (on
a held-out `validation_fraction` with `early_stopping=True`, keeping the best weights; else on the
training loss), `partial_fit` for one more epoch on new data, `loss_curve_` per epoch.
"""

# The families register themselves for load in this order (the order load's error message lists).
from ._base import BaseEstimator, NotFittedError, load
from ._many_to_one import SequenceClassifier, SequenceRegressor
from ._tagger import SequenceTagger
from ._language_model import CharLanguageModel
from ._seq2seq import Seq2Seq

__all__ = ["BaseEstimator", "SequenceClassifier", "SequenceRegressor", "SequenceTagger",
           "CharLanguageModel", "Seq2Seq", "NotFittedError", "load"]
