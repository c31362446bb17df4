"""Reference for satlas' evaluation classifier (src/eval/logreg.rs): scikit-learn's
LogisticRegression(C=0.005) -- multinomial (the only lbfgs behaviour in sklearn >= 1.5, where
`multi_class` is deprecated/removed), L2 penalty, lbfgs, intercept not penalised -- on a small fixed
dataset, as SATURN fits it on cell embeddings (no standardisation).

Writes fixtures/reference/eval_{train_x,train_y,test_x,proba,pred}.npy (float64; labels as
float64 class indices 0..K-1, the classes are the sorted label values). tol=1e-10 / max_iter=10000
so sklearn reaches the optimum (its default tol=1e-4 may stop earlier); satlas stops at a
max-gradient of 1e-8 on the same (mean-scaled) objective.

Run: ~/.cache/satlas/refenv/bin/python scripts/reference/eval_reference.py
"""
import os

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "reference")
rng = np.random.default_rng(20240601)
K, D, N_TRAIN, N_TEST = 5, 16, 300, 200
centres = rng.normal(0.0, 1.5, size=(K, D))


def sample(n):
    y = rng.integers(0, K, size=n)
    x = centres[y] + rng.normal(0.0, 2.0, size=(n, D))
    return x, y


train_x, train_y = sample(N_TRAIN)
test_x, _ = sample(N_TEST)
model = LogisticRegression(C=0.005, solver="lbfgs", tol=1e-10, max_iter=10000)
model.fit(train_x, train_y)
proba = model.predict_proba(test_x)
pred = model.predict(test_x)
for name, arr in [("train_x", train_x), ("train_y", train_y), ("test_x", test_x),
                  ("proba", proba), ("pred", pred)]:
    np.save(os.path.join(OUT, f"eval_{name}.npy"), np.ascontiguousarray(arr, dtype=np.float64))
print(f"sklearn {sklearn.__version__}: {model.n_iter_} iterations; "
      f"train accuracy {model.score(train_x, train_y):.4f}; "
      f"test max proba mean {proba.max(axis=1).mean():.4f}")
