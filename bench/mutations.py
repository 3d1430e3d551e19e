"""Break each pinned behaviour once and check that its test fails (then restore the code).

    python -m bench.mutations          # prints one line per mutation; exit 1 if a test passed

Each entry: the file, the exact text to replace, its broken form, and the test(s) that must fail.
The results are recorded in docs/testing.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

T = "tests/test_science.py::"
MUTATIONS = [
    ("trial scorer: target excluded from the retain labels", "pipeline/unlearn/trials.py",
     "                lab[lab == concept.index] = -1\n", "                pass\n",
     [T + "test_trial_scorer_excludes_the_target_from_the_retain_labels"]),
    ("trial scorer: captions naming two concepts ignored", "pipeline/unlearn/trials.py",
     "hits[0] if len(hits) == 1 else -1", "hits[0] if hits else -1",
     [T + "test_caption_labels_ignore_captions_that_name_two_concepts"]),
    ("trial scorer: retain = mean of named top-1 and recall@1", "pipeline/unlearn/trials.py",
     "retain = recall if named is None else 0.5 * (named + recall)",
     "retain = recall if named is None else named",
     [T + "test_trial_scorer_formula_on_hand_built_features"]),
    ("gradient pass: per-sample mean whatever the batch size", "pipeline/unlearn/gradients.py",
     "        w = (e - s) / n\n", "        w = 1 / len(starts)\n",
     [T + "test_forget_gradient_does_not_depend_on_the_batch_size"]),
    ("gradient pass: gradients zeroed every batch", "pipeline/unlearn/gradients.py",
     "        model.zero_grad(set_to_none=True)\n        loss.backward()\n",
     "        loss.backward()\n",
     [T + "test_gradients_are_zeroed_every_batch"]),
    ("gradient pass: a 1-pair retain batch is folded", "pipeline/unlearn/gradients.py",
     "        starts.pop()", "        pass",
     [T + "test_a_one_pair_retain_batch_is_folded_into_the_previous_one"]),
    ("layer choice: the best retain wins", "pipeline/unlearn/slug.py",
     "return max(ok, key=lambda s: (s.result.best.retain, -s.rel(s.result.best.lam)), default=None)",
     "return min(ok, key=lambda s: (s.result.best.retain, -s.rel(s.result.best.lam)), default=None)",
     [T + "test_the_layer_with_the_best_retain_wins_and_ties_go_to_the_smaller_step"]),
    ("layer choice: ties go to the smaller relative step", "pipeline/unlearn/slug.py",
     "return max(ok, key=lambda s: (s.result.best.retain, -s.rel(s.result.best.lam)), default=None)",
     "return max(ok, key=lambda s: (s.result.best.retain, s.rel(s.result.best.lam)), default=None)",
     [T + "test_the_layer_with_the_best_retain_wins_and_ties_go_to_the_smaller_step"]),
    ("first step: lambda_0 = scale0 * ||theta|| / ||g||", "pipeline/unlearn/slug.py",
     "search_step(evaluate, cfg.scale0 * rho,", "search_step(evaluate, cfg.scale0,",
     [T + "test_the_first_step_is_scale0_times_the_norm_ratio"]),
    ("the step: theta + lambda * g", "pipeline/unlearn/slug.py",
     "    return theta + lam * grad.to(theta.device, theta.dtype)",
     "    return theta - lam * grad.to(theta.device, theta.dtype)",
     [T + "test_the_step_is_theta_plus_lambda_g_and_lowers_the_forget_cosine"]),
    ("the step: one formula for the trial and the patch", "pipeline/unlearn/slug.py",
     "        param.copy_(step(theta0, grad, lam))\n",
     "        param.add_(grad.to(param.device, param.dtype), alpha=lam)\n",
     [T + "test_a_trial_scores_exactly_the_tensor_the_patch_ships"]),
    ("ranking: fronts > 1", "pipeline/unlearn/layers.py",
     'r["on_front"] = lv <= fronts', 'r["on_front"] = lv == 1',
     [T + "test_second_front_and_signed_alignment"]),
    ("ranking: signed alignment", "pipeline/unlearn/layers.py",
     'key = "alignment" if signed else "abs_alignment"', 'key = "abs_alignment"',
     [T + "test_second_front_and_signed_alignment"]),
    ("evaluation: the target excluded from its kind", "pipeline/evaluate/unlearning.py",
     "            sel = s.targets != cidx\n", "            pass\n",
     [T + "test_evaluation_excludes_the_target_and_clamps_top_k"]),
    ("evaluation: the target excluded from the CelebA retain", "pipeline/evaluate/unlearning.py",
     " - {names.key(x.concept.label)}", "",
     [T + "test_evaluation_excludes_the_target_and_clamps_top_k"]),
    ("evaluation: top-k clamped to the class count", "pipeline/evaluate/zeroshot.py",
     "    k = min(k, logits.shape[1])\n", "",
     [T + "test_evaluation_excludes_the_target_and_clamps_top_k"]),
    ("MIA: members against non-members", "pipeline/evaluate/mia.py",
     "rng.choice(nonmembers, n, replace=False)", "rng.choice(members, n, replace=False)",
     [T + "test_mia_on_hand_built_cosines"]),
    ("canvas grid: cell -> (style, object) labels", "pipeline/canvas/protocol.py",
     "acc_s = (ps == truth_s).float().view(len(cells), per_prompt).mean(1).view(shape)",
     "acc_s = (ps == truth_s).float().view(len(cells), per_prompt).mean(1).view(shape[::-1]).T",
     [T + "test_canvas_grid_maps_cells_to_their_style_and_object"]),
    ("canvas scorer: a target prompt's label", "pipeline/canvas/target.py",
     "CanvasPrompt(canvas.prompt(template, *cell(target.index, x)), target.index)",
     "CanvasPrompt(canvas.prompt(template, *cell(target.index, x)), x)",
     [T + "test_canvas_scorer_prompts_carry_their_own_label"]),
    ("sets: test_fraction", "pipeline/sets/build.py",
     "n_test = int(round(cfg.test_fraction * len(forget)))",
     "n_test = int(round((1 - cfg.test_fraction) * len(forget)))",
     [T + "test_test_fraction_and_nonmembers_without_the_concept"]),
    ("sets: non-members never mention the concept", "pipeline/sets/build.py",
     """            cands += [(shard.name, str(k)) for k, c in zip(meta["key"], meta["caption"])
                      if not matcher(c)]""",
     """            cands += [(shard.name, str(k)) for k, c in zip(meta["key"], meta["caption"])]""",
     [T + "test_test_fraction_and_nonmembers_without_the_concept"]),
    ("shard reader: incomplete samples counted", "pipeline/datasets/shards.py",
     "                report.incomplete += 1\n", "",
     [T + "test_shard_reader_counts_incomplete_samples"]),
    ("baselines: logit_scale clamped", "pipeline/unlearn/baselines/iterative.py",
     '                        params["logit_scale"].clamp_(0, math.log(100))\n',
     "                        pass\n",
     [T + "test_iterative_baselines_clamp_logit_scale"]),
]


def main() -> None:
    bad = 0
    for what, file, old, new, tests in MUTATIONS:
        path = Path(file)
        src = path.read_text()
        if src.count(old) != 1:
            print(f"SETUP  {what}: the text to break is not found exactly once in {file}")
            bad += 1
            continue
        path.write_text(src.replace(old, new))
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                   *tests], capture_output=True, text=True)
        finally:
            path.write_text(src)
        caught = proc.returncode != 0
        bad += not caught
        print(f"{'caught' if caught else 'MISSED'}  {what}  ({file})", flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
