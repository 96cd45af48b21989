"""Detection metrics shared by tests, benchmarks and the Ultralytics recording script.

Pure numpy and no cityeye imports on purpose: `benchmarks/record_ultralytics.py` loads this file
by path inside a separate virtual environment (ultralytics + torch, no cityeye), so "ours" and
"Ultralytics'" numbers come out of one and the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """IoU of every xyxy box in `a` with every box in `b` (float64, 0 for empty unions)."""
    aa = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    bb = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(aa[:, None, 2], bb[None, :, 2]) - np.maximum(aa[:, None, 0], bb[None, :, 0])
    ih = np.minimum(aa[:, None, 3], bb[None, :, 3]) - np.maximum(aa[:, None, 1], bb[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (aa[:, 2] - aa[:, 0]) * (aa[:, 3] - aa[:, 1])
    area_b = (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: FloatArray = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def inside_fraction(boxes: npt.ArrayLike, regions: npt.ArrayLike) -> FloatArray:
    """For each xyxy box, the largest fraction of its area covered by any one xyxy region."""
    bx = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    rg = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    if len(bx) == 0 or len(rg) == 0:
        return np.zeros(len(bx))
    iw = np.minimum(bx[:, None, 2], rg[None, :, 2]) - np.maximum(bx[:, None, 0], rg[None, :, 0])
    ih = np.minimum(bx[:, None, 3], rg[None, :, 3]) - np.maximum(bx[:, None, 1], rg[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = np.maximum((bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1]), 1e-9)
    result: FloatArray = (inter / area[:, None]).max(axis=1)
    return result


@dataclass(frozen=True, slots=True)
class FramePredictions:
    """One frame's detections of the evaluated class and its ground truth (xyxy pixels)."""

    boxes: FloatArray
    scores: FloatArray
    gt: FloatArray


def average_precision(frames: Sequence[FramePredictions], iou_threshold: float = 0.5) -> dict[str, float]:
    """AP at `iou_threshold` over all frames: greedy score-ordered matching, all-point interpolation.

    Matching follows COCO/VOC: detections in descending score order, each takes the unmatched
    ground-truth box of highest IoU if that IoU reaches the threshold; precision is made monotone
    and integrated over every recall step (VOC 2010+ "all points"), so the number does not depend
    on a sampling grid.
    """
    scores: list[float] = []
    tps: list[bool] = []
    n_gt = 0
    for f in frames:
        n_gt += len(f.gt)
        order = np.argsort(-np.asarray(f.scores), kind="stable")
        boxes = np.asarray(f.boxes, dtype=np.float64).reshape(-1, 4)[order]
        iou = iou_matrix(boxes, f.gt)
        taken = np.zeros(len(f.gt), dtype=bool)
        for i in range(len(boxes)):
            hit = False
            if len(f.gt):
                cand = np.where(taken, -1.0, iou[i])
                j = int(cand.argmax())
                if cand[j] >= iou_threshold:
                    taken[j] = True
                    hit = True
            tps.append(hit)
            scores.append(float(np.asarray(f.scores)[order[i]]))
    if n_gt == 0:
        return {"ap": float("nan"), "gt": 0, "detections": len(scores), "recall": float("nan")}
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(tps, dtype=np.float64)[order]
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1.0 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    ap = float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    return {
        "ap": ap,
        "gt": n_gt,
        "detections": len(scores),
        "recall": float(recall[-1]) if len(recall) else 0.0,
    }


@dataclass(frozen=True, slots=True)
class ParityResult:
    """How one frame's detections compare with a reference (e.g. Ultralytics') on the same model."""

    reference: int
    matched: int
    min_iou: float
    max_conf_diff: float
    class_mismatches: int
    extra_above: int
    problems: tuple[str, ...]


def compare_to_reference(
    ref_boxes: npt.ArrayLike,
    ref_conf: npt.ArrayLike,
    ref_cls: npt.ArrayLike,
    boxes: npt.ArrayLike,
    conf: npt.ArrayLike,
    cls: npt.ArrayLike,
    *,
    min_ref_conf: float = 0.25,
    min_iou: float = 0.98,
    max_conf_diff: float = 0.02,
    extra_conf: float = 0.3,
) -> ParityResult:
    """Every reference box above `min_ref_conf` must be matched (IoU >= min_iou, same class, confidence
    within max_conf_diff) by a distinct box of ours; none of our boxes above `extra_conf` may be left over.

    Matching is one-to-one, best IoU first among same-class pairs, so two reference boxes cannot both
    claim one box of ours.
    """
    rb = np.asarray(ref_boxes, dtype=np.float64).reshape(-1, 4)
    rc = np.asarray(ref_conf, dtype=np.float64).ravel()
    rk = np.asarray(ref_cls).astype(np.int64).ravel()
    ob = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    oc = np.asarray(conf, dtype=np.float64).ravel()
    ok = np.asarray(cls).astype(np.int64).ravel()
    want = np.flatnonzero(rc > min_ref_conf)
    iou = iou_matrix(rb, ob)
    same = rk[:, None] == ok[None, :]
    score = np.where(same, iou, -1.0)
    ii, jj = np.nonzero(score > 0)
    pairs = sorted(zip(score[ii, jj].tolist(), ii.tolist(), jj.tolist(), strict=True), reverse=True)
    ref_to: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in pairs:
        if i in ref_to or j in used:
            continue
        ref_to[i] = j
        used.add(j)
    problems: list[str] = []
    ious, diffs = [], []
    matched = mismatched = 0
    for i in want.tolist():
        if i not in ref_to:
            any_iou = iou[i].max() if len(ob) else 0.0
            if len(ob) and any_iou >= min_iou:
                mismatched += 1
            problems.append(f"reference box {i} (class {rk[i]}, conf {rc[i]:.3f}) has no same-class match")
            continue
        j = ref_to[i]
        ious.append(iou[i, j])
        diffs.append(abs(rc[i] - oc[j]))
        if iou[i, j] < min_iou or abs(rc[i] - oc[j]) > max_conf_diff:
            problems.append(
                f"reference box {i} (class {rk[i]}, conf {rc[i]:.3f}): ours IoU {iou[i, j]:.4f}, "
                f"conf {oc[j]:.3f}"
            )
        else:
            matched += 1
    matched_ours = set(ref_to.values())
    extra = [j for j in range(len(ob)) if oc[j] > extra_conf and j not in matched_ours]
    for j in extra:
        problems.append(f"extra box of ours {j} (class {ok[j]}, conf {oc[j]:.3f}) not in the reference")
    return ParityResult(
        reference=len(want),
        matched=matched,
        min_iou=float(min(ious)) if ious else 1.0,
        max_conf_diff=float(max(diffs)) if diffs else 0.0,
        class_mismatches=mismatched,
        extra_above=len(extra),
        problems=tuple(problems),
    )
