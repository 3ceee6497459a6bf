"""Architecture searches as resumable jobs writing into a run folder.

* :mod:`models.search.speechnas`: SpeechNAS (supernet, Bayesian optimisation, retrain).
* :mod:`models.search.autospeech`: AutoSpeech (DARTS bi-level cell search, derive, retrain).
* :mod:`models.search.nas_tasnet`: NAS-TasNet (gradient / REINFORCE search over Conv-TasNet).
* :mod:`models.search.mitas`: MiTAS weight-sharing variants trained on one budget.
* :mod:`models.search.optuna_study`: study storage (SQLite, journal file, database URLs),
  samplers, retried trials and the ``trials.jsonl`` trial table.
* :mod:`models.search.common`: speaker data, batches, EER scoring and the retraining loop of
  the speaker searches.
"""
