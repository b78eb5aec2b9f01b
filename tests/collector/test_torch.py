"""Torch integration: batched read-back without .item(), gradient norms from hooks."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.optim.optimizer as torch_optimizer  # noqa: E402

from stethoscope.collector import DEFAULT_WATCH_EVERY, StethoscopeWarning  # noqa: E402
from tests.collector.fakes import FakeServer  # noqa: E402


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
        torch.nn.Linear(16, 1),
    )


def _reference_norms(module: torch.nn.Module) -> dict[str, float]:
    ref = {n: p.grad.norm().item() for n, p in module.named_parameters() if p.grad is not None}
    ref["total"] = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in module.parameters() if p.grad is not None])
    ).item()
    return ref


def test_tensor_scalars_are_read_back_in_one_copy_without_item(make_monitor, fake, monkeypatch):
    mon = make_monitor(flush_interval=3600)
    losses = [torch.tensor(float(i), requires_grad=True) * 2 for i in range(100)]
    ints = [torch.tensor(i, dtype=torch.int64) for i in range(100)]
    halfs = [torch.tensor([0.5], dtype=torch.float16) for _ in range(100)]

    cpu_calls = {"n": 0}
    real_cpu = torch.Tensor.cpu

    def counting_cpu(self, *a, **k):
        cpu_calls["n"] += 1
        return real_cpu(self, *a, **k)

    def forbidden(self, *a, **k):
        raise AssertionError("per-value read-back (.item()/float()) in the collector")

    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    monkeypatch.setattr(torch.Tensor, "__float__", forbidden)
    monkeypatch.setattr(torch.Tensor, "tolist", forbidden)
    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    for step in range(100):
        mon.log(step, loss=losses[step], count=ints[step], half=halfs[step], plain=0.5)
    mon.close()
    monkeypatch.undo()
    assert cpu_calls["n"] == 1  # one batched copy for everything on the CPU "device"
    assert fake.series("loss") == (list(range(100)), [2.0 * i for i in range(100)])
    assert fake.series("count") == (list(range(100)), [float(i) for i in range(100)])
    assert fake.series("half")[1] == [0.5] * 100
    assert fake.series("plain")[1] == [0.5] * 100


def test_nonfinite_tensors_and_mixed_float_and_tensor_points(make_monitor, fake) -> None:
    mon = make_monitor()
    mon.log(0, loss=torch.tensor(float("nan")))
    mon.log(1, loss=2.0)
    mon.log(2, loss=torch.tensor(float("-inf")))
    with pytest.warns(StethoscopeWarning, match="shape"):
        mon.log(3, loss=1.0, vec=torch.ones(3))
    mon.close()
    steps, vals = fake.series("loss")
    assert steps == [0, 1, 2, 3]
    assert math.isnan(vals[0]) and vals[1] == 2.0 and vals[2] == -math.inf and vals[3] == 1.0
    assert "vec" not in fake.series_names()


def test_inplace_modified_tensor_is_reported(make_monitor, fake) -> None:
    mon = make_monitor(flush_interval=3600)
    running = torch.zeros(())
    mon.log(0, running=running)
    running += 5
    with pytest.warns(StethoscopeWarning, match="modified in place"):
        mon.close()


def test_watch_norms_match_reference_on_a_real_training_loop(make_monitor, fake) -> None:
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    mon = make_monitor()
    handle = mon.watch(net, name="G", every=1)
    refs = []
    torch.manual_seed(1)
    for step in range(12):
        x = torch.randn(32, 4)
        loss = (net(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        refs.append(_reference_norms(net))
        opt.step()
        mon.log(step, loss=loss)
    mon.close()
    assert set(handle.series) == {f"grad_norm/G/{n}" for n, _ in net.named_parameters()} | {
        "grad_norm/G/total"
    }
    assert fake.series_names() == set(handle.series) | {"loss"}
    for name in [*(n for n, _ in net.named_parameters()), "total"]:
        steps, vals = fake.series(f"grad_norm/G/{name}")
        assert steps == list(range(12)), name
        assert vals == pytest.approx([r[name] for r in refs], rel=1e-5), name


def test_gan_style_two_optimizers_see_final_gradients(make_monitor, fake) -> None:
    """D's norms are taken at D's optimizer step, not polluted by G's backward through D."""
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    D = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optG = torch.optim.Adam(G.parameters(), lr=1e-3)
    optD = torch.optim.Adam(D.parameters(), lr=1e-3)
    bce = torch.nn.BCEWithLogitsLoss()
    mon = make_monitor()
    mon.watch(G, name="G", every=1)
    mon.watch(D, name="D", every=1)
    ref_d, ref_g = [], []
    for step in range(6):
        real = torch.randn(16, 2) + 3
        fake_x = G(torch.randn(16, 2))
        D.zero_grad()
        errD_real = bce(D(real), torch.ones(16, 1))
        errD_real.backward()
        errD_fake = bce(D(fake_x.detach()), torch.zeros(16, 1))
        errD_fake.backward()
        ref_d.append(_reference_norms(D)["total"])
        optD.step()
        G.zero_grad()
        errG = bce(D(fake_x), torch.ones(16, 1))
        errG.backward()  # also accumulates into D's grads
        ref_g.append(_reference_norms(G)["total"])
        optG.step()
        mon.log(step, loss_D=errD_real + errD_fake, loss_G=errG)
    mon.close()
    assert fake.series("grad_norm/D/total") == (list(range(6)), pytest.approx(ref_d, rel=1e-5))
    assert fake.series("grad_norm/G/total") == (list(range(6)), pytest.approx(ref_g, rel=1e-5))


def test_several_d_steps_per_g_step_keep_d_on_g_s_step_grid(make_monitor, fake) -> None:
    """WGAN-style: 5 D updates per G update, one log per G update: D's norms are recorded on
    the same steps as G's (the last D update of each step)."""
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    D = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optG = torch.optim.Adam(G.parameters(), lr=1e-3)
    optD = torch.optim.Adam(D.parameters(), lr=1e-3)
    mon = make_monitor()
    mon.watch(G, name="G", every=10)
    mon.watch(D, name="D", every=10)
    last_d = {}
    for step in range(45):
        for _ in range(5):
            loss_d = D(G(torch.randn(16, 2)).detach()).mean() - D(torch.randn(16, 2) + 3).mean()
            optD.zero_grad()
            loss_d.backward()
            last_d[step] = _reference_norms(D)["total"]
            optD.step()
        loss_g = -D(G(torch.randn(16, 2))).mean()
        optG.zero_grad()
        loss_g.backward()
        optG.step()
        mon.log(step, loss_D=loss_d, loss_G=loss_g)
    mon.close()
    g_steps = fake.series("grad_norm/G/total")[0]
    d_steps, d_values = fake.series("grad_norm/D/total")
    assert g_steps == [0, 10, 20, 30, 40]
    assert d_steps == g_steps
    # from the second logged step on, the rate is known and the last D update's norms kept
    assert d_values[1:] == pytest.approx([last_d[s] for s in d_steps[1:]], rel=1e-5)


def _train(net, opt, mon, steps, log_every=1, backward_only=False):
    torch.manual_seed(2)
    for step in range(steps):
        x = torch.randn(8, 4)
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        if not backward_only:
            opt.step()
        if step % log_every == 0:
            mon.log(step, loss=loss)


def test_every_schedules(make_monitor, fake) -> None:
    net, net2, net3 = _mlp(), _mlp(), _mlp()
    mon = make_monitor()
    mon.watch(net, name="default")
    mon.watch(net2, name="three", every=3)
    mon.watch(net3, name="chosen", every=lambda s: s in (2, 5, 6))
    params = [*net.parameters(), *net2.parameters(), *net3.parameters()]
    opt = torch.optim.SGD(params, lr=0.01)

    class Both(torch.nn.Module):
        def forward(self, x):
            return net(x) + net2(x) + net3(x)

    _train(Both(), opt, mon, 25)
    mon.close()
    assert fake.series("grad_norm/default/total")[0] == list(range(0, 25, DEFAULT_WATCH_EVERY))
    assert fake.series("grad_norm/three/total")[0] == list(range(0, 25, 3))
    assert fake.series("grad_norm/chosen/total")[0] == [2, 5, 6]


def test_sparse_logging_labels_norms_with_the_logged_step(make_monitor, fake) -> None:
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    mon = make_monitor()
    mon.watch(net, name="G", every=5)
    _train(net, opt, mon, 23, log_every=5)
    mon.close()
    assert fake.series("loss")[0] == [0, 5, 10, 15, 20]
    assert fake.series("grad_norm/G/total")[0] == [0, 5, 10, 15, 20]


def test_remove_removes_every_hook_and_stops_recording(make_monitor, fake) -> None:
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    before = len(torch_optimizer._global_optimizer_pre_hooks)
    mon = make_monitor()
    h1 = mon.watch(net, name="G", every=1)
    h2 = mon.watch(net, name="Gb", every=1, trigger="backward")
    h3 = mon.watch(net, name="Go", every=1, optimizer=opt)
    assert len(torch_optimizer._global_optimizer_pre_hooks) == before + 1
    assert len(opt._optimizer_step_pre_hooks) == 1
    assert all(len(p._post_accumulate_grad_hooks or {}) == 1 for p in net.parameters())
    _train(net, opt, mon, 3)
    for h in (h1, h2, h3):
        h.remove()
        h.remove()  # idempotent
    assert len(torch_optimizer._global_optimizer_pre_hooks) == before
    assert len(opt._optimizer_step_pre_hooks) == 0
    assert all(not p._post_accumulate_grad_hooks for p in net.parameters())
    assert not vars(net).keys() - set(vars(_mlp()).keys())  # nothing stored on the module
    _train(net, opt, mon, 3)
    mon.close()
    for name in ("G", "Gb", "Go"):
        assert fake.series(f"grad_norm/{name}/total")[0] == [0, 1, 2], name


def test_close_removes_hooks(make_monitor) -> None:
    net = _mlp()
    before = len(torch_optimizer._global_optimizer_pre_hooks)
    mon = make_monitor()
    handle = mon.watch(net, name="G")
    mon.close()
    assert not handle.active
    assert len(torch_optimizer._global_optimizer_pre_hooks) == before


def test_backward_trigger_without_optimizer(make_monitor, fake) -> None:
    net = _mlp()
    mon = make_monitor()
    mon.watch(net, name="G", every=1, trigger="backward")
    refs = []
    torch.manual_seed(3)
    for step in range(4):
        for p in net.parameters():
            p.grad = None
        net(torch.randn(8, 4)).pow(2).mean().backward()
        refs.append(_reference_norms(net)["total"])
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.01 * p.grad
        mon.log(step, x=1.0)
    mon.close()
    assert fake.series("grad_norm/G/total") == ([0, 1, 2, 3], pytest.approx(refs, rel=1e-5))


def test_parameters_without_grad_are_skipped(make_monitor, fake) -> None:
    net = _mlp()
    net[0].weight.requires_grad_(False)
    frozen_head = net[4]
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    mon = make_monitor()
    mon.watch(net, name="G", every=1)
    x = torch.randn(8, 4)
    opt.zero_grad(set_to_none=True)
    net[:4](x).sum().backward()  # the head gets no gradient this step
    opt.step()
    mon.log(0, x=1.0)
    mon.close()
    names = fake.series_names()
    assert "grad_norm/G/0.weight" not in names  # frozen
    assert "grad_norm/G/4.weight" not in names  # no grad this step
    assert frozen_head.weight.grad is None
    assert "grad_norm/G/2.weight" in names and "grad_norm/G/total" in names


def test_watch_validates_its_arguments(make_monitor) -> None:
    mon = make_monitor()
    net = _mlp()
    with pytest.raises(TypeError):
        mon.watch(object(), name="x")
    with pytest.raises(ValueError, match="name"):
        mon.watch(net, name="bad/name")
    with pytest.raises(ValueError, match="every"):
        mon.watch(net, name="a", every=0)
    with pytest.raises(ValueError, match="trigger"):
        mon.watch(net, name="a", trigger="sometimes")
    with pytest.raises(ValueError, match="optimizer"):
        mon.watch(net, name="a", optimizer=torch.optim.SGD(_mlp().parameters(), lr=1))
    with pytest.raises(ValueError, match="no parameters"):
        mon.watch(torch.nn.ReLU(), name="a")
    mon.watch(net, name="a")
    with pytest.raises(ValueError, match="already watched"):
        mon.watch(net, name="a")
    assert mon.watch(net).name == "Sequential"  # default name: the class name


def test_nonfinite_gradients_are_reported(make_monitor, fake: FakeServer) -> None:
    net = _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    mon = make_monitor()
    mon.watch(net, name="G", every=1)
    opt.zero_grad()
    (net(torch.randn(8, 4)).sum() * float("inf")).backward()
    opt.step()
    mon.log(0, loss=float("inf"))
    mon.close()
    _, vals = fake.series("grad_norm/G/total")
    assert not math.isfinite(vals[0])


def test_torch_embeddings(make_monitor, fake) -> None:
    mon = make_monitor()
    emb = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    mon.log_embeddings(7, fake=emb * 1, real=torch.zeros(4, 3))
    with pytest.warns(StethoscopeWarning):
        mon.log_embeddings(8, fake=torch.zeros(4, 3), real=torch.zeros(4, 2))
    mon.close()
    got = fake.embeddings()
    assert [(s, n, a.shape) for s, n, a in got] == [(7, "fake", (6, 3)), (7, "real", (4, 3))]
    assert got[0][2] == pytest.approx(emb.detach().float().numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_hot_path_never_synchronises(make_monitor, fake) -> None:
    import warnings

    dev = torch.device("cuda")
    net = _mlp().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    mon = make_monitor(flush_interval=3600.0)
    mon.watch(net, name="G", every=1)
    mon.watch(net, name="G10")
    x = torch.randn(32, 4, device=dev)
    refs = []
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", StethoscopeWarning)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for step in range(20):
                loss = net(x).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                refs.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in
                                                                  net.parameters()])))
                opt.step()
                mon.log(step, loss=loss, acc=torch.ones((), device=dev, dtype=torch.float16))
                losses.append(loss.detach())
        finally:
            torch.cuda.set_sync_debug_mode(0)
    mon.close()
    assert fake.series("loss") == (list(range(20)),
                                   pytest.approx([v.item() for v in losses], rel=1e-6))
    assert fake.series("grad_norm/G/total") == (list(range(20)),
                                                pytest.approx([r.item() for r in refs], rel=1e-4))
    assert fake.series("grad_norm/G10/total")[0] == [0, 10]
    assert fake.series("acc")[1] == [1.0] * 20
