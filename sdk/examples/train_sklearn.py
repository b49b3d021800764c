"""Train a fraud classifier with scikit-learn and record its chain of custody with Custody.

    export CUSTODY_URL=http://127.0.0.1:8000 CUSTODY_TOKEN=... CUSTODY_NAMESPACE=fraud
    python train_sklearn.py --out ./artifacts [--promote]

What the server then holds: the run (with its git commit, dirty flag, environment and CI facets),
the input dataset version (schema, row count, content digest), a child run per cross-validation
fold with its metrics, the scored output, and the model version (artifact sha256, framework,
hyperparameters, params, final metrics, environment digest), linked in the lineage graph.
"""

from __future__ import annotations

import argparse
import os
import pickle

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

import custody


def make_transactions(path: str, rows: int = 4000, seed: int = 7) -> None:
    """A synthetic transactions table (stand-in for the bank's raw data)."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 1.2, rows)
    hour = rng.integers(0, 24, rows)
    merchant_risk = rng.random(rows)
    card_age_days = rng.integers(1, 3650, rows)
    logit = -4.0 + 0.0015 * amount + 2.5 * merchant_risk + 0.8 * ((hour < 6) | (hour > 22)) - 0.0004 * card_age_days
    fraud = rng.random(rows) < 1 / (1 + np.exp(-logit))
    pd.DataFrame(
        {
            "amount": amount.round(2),
            "hour": hour,
            "merchant_risk": merchant_risk.round(4),
            "card_age_days": card_age_days,
            "is_fraud": fraud.astype("int8"),
        }
    ).to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="artifacts", help="directory for the data, model and scores")
    parser.add_argument("--model-name", default="fraud-detector")
    parser.add_argument("--n-estimators", type=int, default=120)
    parser.add_argument("--promote", action="store_true", help="request promotion to production afterwards")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data_path = os.path.join(args.out, "transactions.csv")
    if not os.path.exists(data_path):
        make_transactions(data_path)

    custody.init()  # CUSTODY_URL / CUSTODY_TOKEN / CUSTODY_NAMESPACE
    params = {"n_estimators": args.n_estimators, "max_depth": 6, "min_samples_leaf": 5, "random_state": 0}

    with custody.run("train-fraud-model", description="Random forest on card transactions") as run:
        df = pd.read_csv(data_path)
        run.input(data_path, data=df)  # schema, row count and content digest from the DataFrame
        run.log_params(params)

        features = df.drop(columns=["is_fraud"])
        target = df["is_fraud"]
        x_train, x_test, y_train, y_test = train_test_split(
            features, target, test_size=0.25, stratify=target, random_state=0
        )

        # Cross-validation: each fold is a child run of this one.
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
        for fold, (fit_idx, val_idx) in enumerate(folds.split(x_train, y_train)):
            with custody.run("train-fraud-model.cv-fold") as child:
                child.log_params({"fold": fold, **params})
                model = RandomForestClassifier(**params).fit(x_train.iloc[fit_idx], y_train.iloc[fit_idx])
                scores = model.predict_proba(x_train.iloc[val_idx])[:, 1]
                auc = roc_auc_score(y_train.iloc[val_idx], scores)
                child.log_metrics({"val_auc": auc})
                run.log_metrics({"cv_auc": auc}, step=fold)

        model = RandomForestClassifier(**params).fit(x_train, y_train)
        scores = model.predict_proba(x_test)[:, 1]
        run.log_metrics(
            {
                "test_auc": roc_auc_score(y_test, scores),
                "test_accuracy": accuracy_score(y_test, scores > 0.5),
            }
        )

        model_path = os.path.join(args.out, "model.pkl")
        with open(model_path, "wb") as fh:
            pickle.dump(model, fh)
        mv = run.log_model(args.model_name, path=model_path, model=model)

        scored = x_test.assign(score=scores.round(6), is_fraud=y_test.values)
        scored_path = os.path.join(args.out, "scored_test_set.csv")
        scored.to_csv(scored_path, index=False)
        run.output(scored_path, data=scored)

    print(f"model {mv.name} version {mv.version} ({mv.artifact_digest}) from run {mv.run_id}")

    if args.promote:
        try:
            request = custody.request_promotion(mv, to="production", reason="retrained on the latest transactions")
            print(f"promotion requested: {request}")
        except custody.FeatureUnavailable as exc:
            print(f"promotion not requested: {exc}")


if __name__ == "__main__":
    main()
