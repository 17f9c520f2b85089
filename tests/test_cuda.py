"""CUDA-only checks, with tolerances for GPU arithmetic (skipped without a GPU; scripts/gpu_check.sh
runs them). The CPU suite holds the exact references; these say how far the GPU paths may move."""
import numpy as np
import pytest
import torch

import train_seam
from network import resnet38_aff, resnet38_seam
from tool.affinity import effective_radius
from tool.cam import multiscale_cam, normalize_cams
from tool.engine.runtime import model_forward, set_precision
from tool.randomwalk import cam_on_grid, random_walk, scores_to_label
from voc12.toy import generate_toy_voc


def multiscale(model, image, device, amp, channels_last=False):
    pairs = [torch.cat([p, p.flip(-1)]) for p in
             (torch.nn.functional.interpolate(image, scale_factor=s, mode="bilinear") for s in (0.5, 1.0, 1.5))]
    label = torch.zeros(20, device=device)
    label[[2, 7, 11]] = 1
    total = multiscale_cam(model_forward(model, device, amp, channels_last), pairs, label, image.shape[2:])
    return normalize_cams(total.cpu().numpy())[[2, 7, 11]]


def test_amp_off_turns_tf32_off(cuda):
    set_precision("off")
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    set_precision("auto")
    assert torch.backends.cudnn.allow_tf32


def test_cams_on_gpu_fp32_match_cpu_and_bf16_stays_close(cuda, capsys):
    torch.manual_seed(0)
    model = resnet38_seam.Net(width=0.5).eval()
    image = torch.randn(1, 3, 160, 224)
    cpu = multiscale(model, image, torch.device("cpu"), "off")
    model.to(cuda)
    set_precision("off")
    fp32 = multiscale(model, image, cuda, "off")
    set_precision("auto")
    bf16 = multiscale(model.to(memory_format=torch.channels_last), image, cuda, "auto", channels_last=True)
    fp32_err = np.abs(fp32 - cpu).max()
    bf16_err = np.abs(bf16 - fp32).mean()
    agree = (bf16.argmax(0) == fp32.argmax(0)).mean()
    with capsys.disabled():
        print(f"\n[cuda] CAM fp32 GPU vs CPU max |diff| {fp32_err:.2e}; bf16 vs fp32 mean |diff| {bf16_err:.4f}, "
              f"argmax agreement {agree:.4f}")
    assert fp32_err < 1e-3  # TF32 off: fp32 CAMs equal the CPU's to float rounding
    assert bf16_err < 0.03 and agree > 0.9  # maps in [0, 1]; a random net's classes are close rivals


def test_random_walk_on_gpu_matches_cpu(cuda):
    torch.manual_seed(0)
    model = resnet38_aff.Net(width=0.25, radius=5).eval()
    h, w = 90, 122
    img = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        aff = model(img)[0]
    rng = np.random.default_rng(0)
    keys = np.array([3, 9])
    cams = rng.random((2, h, w), dtype=np.float32)
    grid = cam_on_grid(cams, keys, alpha=6, num_classes=21)
    radius = effective_radius(5, grid.shape[1:])
    on_cpu = random_walk(grid, aff, radius, beta=8, logt=6)
    on_gpu = random_walk(grid.to(cuda), aff.to(cuda), radius, beta=8, logt=6)
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-3, atol=1e-5)
    channels = np.concatenate([[0], keys + 1])
    label_gpu = scores_to_label(on_gpu, (h, w), channels=channels)
    assert (label_gpu == scores_to_label(on_cpu, (h, w))).mean() > 0.999


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    generate_toy_voc(str(root), n_train_aug=16, n_train=4, n_val=2, size=96, seed=0)
    return root


def seam_argv(toy, out, *extra):
    return ["--weights", "none", "--voc12_root", str(toy), "--train_list", str(toy / "train_aug.txt"), "--cls_labels",
            str(toy / "cls_labels.txt"), "--session_name", str(out / "seam"), "--tblog_dir", str(out / "tb"),
            "--batch_size", "4", "--num_workers", "2", "--width", "0.25", "--crop_size", "96", "--resize_long",
            "96", "128", "--max_step", "6", "--ckpt_interval", "3", "--log_interval", "2", *extra]


def test_training_on_cuda_writes_cpu_checkpoints_and_resumes(cuda, toy, tmp_path, capsys, monkeypatch):
    train_seam.main(seam_argv(toy, tmp_path, "--amp", "off", "--keep_resume"))  # a finished run removes it
    out = capsys.readouterr().out
    assert "device cuda" in out and "step 6/6" in out
    final = torch.load(tmp_path / "seam.pth", weights_only=True, map_location=None)
    assert all(v.device.type == "cpu" for v in final.values())  # loadable on a machine without a GPU
    resume = torch.load(tmp_path / "seam.resume.pt", weights_only=True, map_location=None)
    assert resume["rng"]["cuda"].dtype == torch.uint8  # this device's generator alone
    assert all(v.device.type == "cpu" for v in resume["model"].values())
    # a crash at step 4, then a resume from step 3 (in fp32: GPU backward kernels are not
    # deterministic, so close, not equal)
    part = tmp_path / "part"
    real, calls = train_seam.seam_losses, []

    def crash_at_step_4(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_seam, "seam_losses", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_seam.main(seam_argv(toy, part, "--amp", "off"))
    monkeypatch.setattr(train_seam, "seam_losses", real)
    train_seam.main(seam_argv(toy, part, "--amp", "off", "--resume", str(part / "seam.resume.pt")))
    resumed = torch.load(part / "seam.pth", weights_only=True)
    for k in final:
        torch.testing.assert_close(resumed[k], final[k], rtol=1e-4, atol=1e-5, msg=k)


def test_compile_trains_without_falling_back(cuda, toy, tmp_path, capsys):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    train_seam.main(seam_argv(toy, tmp_path, "--compile", "--max_step", "4"))
    assert "step 4/4" in capsys.readouterr().out
    # suppress_errors runs what fails to compile eagerly, silently: ask dynamo what it compiled
    assert counters["stats"]["unique_graphs"] > 0, dict(counters)
