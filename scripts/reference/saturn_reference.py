"""PyTorch reference values for satlas' SATURN core (src/model, src/macrogene/weights.rs).

Follows the semantics of SATURN's reference implementation (snap-stanford/SATURN,
model/saturn_model.py and train-saturn.py) as restated in SATURN.md sections 3-6, including its FIXes.
Run with the reference environment (scripts/refenv.sh):
    ~/.cache/satlas/refenv/bin/python scripts/reference/saturn_reference.py

Writes safetensors files to fixtures/reference/ (all seeded: torch.manual_seed / numpy default_rng):
  zinb.safetensors        x, mu, theta, pi -> ll (scvi-tools log_zinb_positive, eps 1e-8); and
                          logits = ln mu -> in float64 nll_f64 = -sum(ll) at
                          mu = x.sum() * softmax(logits), d_logits, d_theta, d_pi its gradients
  rank_weights.safetensors distances (with ties) -> ranks, w_default, w_one_hot, w_smoothed (M x G)
  forward_weights.safetensors  every parameter of a small network, named as in src/model/network.rs
  forward_io.safetensors  counts of species 1 -> m, z, px, mu, pi, theta, zinb, q, partners, e, reg
  mining.safetensors      z (normalised), sim, labels, species, draws -> triplets (K x 3), loss
  regulariser.safetensors q, e, partners -> reg, d_q (its gradient)
  vae_weights.safetensors  a small network of the VAE variant (fc_mu, fc_var heads)
  vae_io.safetensors      counts of species 0 -> m, z (= mu of the latent), mu, pi, kl, zinb, loss
                          (zinb + w * mean kl at w = kl_weight) and cycle = the KL weights of
                          epochs 0..119 (SATURN's get_kld_cycle, period 50)
"""
import os
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from scipy.stats import rankdata

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "fixtures", "reference")


# ---------------------------------------------------------------- ZINB (scvi-tools) ----------
def log_zinb_positive(x, mu, theta, pi, eps=1e-8):
    softplus_pi = F.softplus(-pi)
    log_theta_eps = torch.log(theta + eps)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    pi_theta_log = -pi + theta * (log_theta_eps - log_theta_mu_eps)
    case_zero = F.softplus(pi_theta_log) - softplus_pi
    mul_case_zero = torch.mul((x < eps).type(torch.float32), case_zero)
    case_non_zero = (-softplus_pi + pi_theta_log + x * (torch.log(mu + eps) - log_theta_mu_eps)
                     + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))
    mul_case_non_zero = torch.mul((x > eps).type(torch.float32), case_non_zero)
    return mul_case_zero + mul_case_non_zero


def zinb_fixture():
    x = torch.tensor([0, 0, 0, 1, 3, 10, 100, 0, 7, 2500, 1, 0], dtype=torch.float32)
    mu = torch.tensor([0.5, 20.0, 1e-4, 1.0, 2.5, 30.0, 80.0, 1000.0, 7.0, 2000.0, 1e-3, 3.0])
    theta = torch.tensor([1e-3, 5.0, 1e4, 0.1, 1.0, 50.0, 1e4, 2e-2, 1e3, 10.0, 0.5, 1.0])
    pi = torch.tensor([-3.0, 0.0, 2.0, -1.0, 4.0, -10.0, 0.5, -0.2, 1.5, 0.0, 3.0, -5.0])
    # what training computes, in float64: the decoder's logits (here ln mu) give
    # mu = library * softmax(logits) with library = x.sum(); the negative log-likelihood and its
    # gradients with respect to logits, theta and pi
    logits = torch.log(mu)
    params = [t.double().requires_grad_() for t in (logits, theta, pi)]
    x64 = x.double()
    mu64 = x64.sum() * torch.softmax(params[0], -1)
    nll_f64 = -log_zinb_positive(x64, mu64, *params[1:]).sum()
    nll_f64.backward()
    grads = {f"d_{name}": t.grad for name, t in zip(("logits", "theta", "pi"), params)}
    save_file({"x": x, "mu": mu, "theta": theta, "pi": pi, "ll": log_zinb_positive(x, mu, theta, pi),
               "logits": logits, "nll_f64": nll_f64.detach().reshape(1), **grads},
              os.path.join(OUT, "zinb.safetensors"))


# ---------------------------------------------------------------- rank weights --------------
def rank_fixture():
    rng = np.random.default_rng(1)
    d = rng.integers(0, 5, size=(6, 9)).astype(np.float64)  # genes x centroids, many ties
    ranks = rankdata(d, axis=1, method="average")
    out = {
        "distances": torch.from_numpy(d),
        "ranks": torch.from_numpy(ranks),
        "w_default": torch.from_numpy((2 * np.log(1 + 1 / ranks) ** 2).T.copy()).float(),
        "w_one_hot": torch.from_numpy((ranks == 1).astype(np.float64).T.copy()).float(),
        "w_smoothed": torch.from_numpy((1 / ranks).T.copy()).float(),
    }
    save_file(out, os.path.join(OUT, "rank_weights.safetensors"))


# ---------------------------------------------------------------- network -------------------
def full_block(i, o, p):
    return nn.Sequential(nn.Linear(i, o), nn.LayerNorm(o), nn.ReLU(), nn.Dropout(p))


class Saturn(nn.Module):
    """SATURN.md section 4 with the FIXes; parameter names as src/model/network.rs."""

    def __init__(self, genes, m, h, l, p, init_w, vae=False):
        super().__init__()
        self.vae = vae
        self.genes = genes
        self.offsets = np.concatenate([[0], np.cumsum(genes)[:-1]]).tolist()
        self.p_weights = nn.Parameter(torch.log(init_w))
        self.cl_layer_norm = nn.LayerNorm(m)
        self.drop = nn.Dropout(p)
        if vae:  # upstream's VAE variant: one block, then the fc_mu / fc_var heads
            self.encoder = nn.Sequential(full_block(m, h, p))
            self.fc_mu = nn.Linear(h, l)
            self.fc_var = nn.Linear(h, l)
        else:
            self.encoder = nn.Sequential(full_block(m, h, p), full_block(h, l, p))
        self.px_decoder = nn.Sequential(full_block(l + len(genes), h, p))
        self.cl_scale_decoder = full_block(h, m, p)
        self.px_dropout_decoders = nn.ModuleDict({str(s): nn.Sequential(nn.Linear(h, g)) for s, g in enumerate(genes)})
        self.px_rs = nn.ParameterDict({str(s): nn.Parameter(torch.randn(g)) for s, g in enumerate(genes)})
        self.p_weights_embeddings = nn.Sequential(full_block(m, h, p))

    def forward(self, s, x):
        w = self.p_weights.exp()[:, self.offsets[s]:self.offsets[s] + self.genes[s]]
        m = self.drop(F.relu(self.cl_layer_norm(torch.log1p(x) @ w.T)))
        z = self.encoder(m)
        if self.vae:  # eval: the decoder gets mu (training would sample mu + eps * std)
            hidden = z
            z = self.fc_mu(hidden)
            log_var = self.fc_var(hidden)
            self.kl = -0.5 * torch.sum(1 + log_var - z ** 2 - log_var.exp(), dim=1)
        onehot = torch.zeros(x.shape[0], len(self.genes))
        onehot[:, s] = 1.0
        h = self.px_decoder(torch.cat([z, onehot], 1))
        c = self.cl_scale_decoder(h)
        px = torch.softmax(c @ w, -1)
        mu = x.sum(1, keepdim=True) * px
        pi = self.px_dropout_decoders[str(s)](h)
        theta = torch.exp(self.px_rs[str(s)])
        return m, z, px, mu, pi, theta

    def gene_vectors(self):
        return self.p_weights_embeddings(self.p_weights.exp().T)


def regulariser(q, e, partners):
    """R = sum_g (cos(Q_g, Q_j(g)) - cos(E_g, E_j(g)))^2"""
    return ((F.cosine_similarity(q, q[partners], dim=1) - F.cosine_similarity(e, e[partners], dim=1)) ** 2).sum()


def forward_fixture():
    torch.manual_seed(0)
    genes, m, h, l = [12, 9], 6, 8, 5
    init_w = torch.rand(m, sum(genes)) * 0.9 + 0.05
    net = Saturn(genes, m, h, l, 0.1, init_w)
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for name, p in net.named_parameters():
            if name.endswith(".weight") and p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias") and p.dim() == 1 and "px_dropout" not in name:
                p.copy_(0.1 * torch.randn_like(p))
    net.eval()
    x = torch.poisson(torch.rand(4, genes[1]) * 6.0)
    x[:, 0] += 1.0  # no empty cell
    with torch.no_grad():
        mg, z, px, mu, pi, theta = net(1, x)
        zinb = -log_zinb_positive(x, mu, theta, pi).sum(-1).mean()
        q = net.gene_vectors()
        partners = torch.randint(sum(genes), (sum(genes),))
        e = torch.randn(sum(genes), 7)
        reg = regulariser(q, e, partners)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(OUT, "forward_weights.safetensors"))
    save_file({"counts": x, "m": mg, "z": z, "px": px, "mu": mu, "pi": pi, "theta": theta, "zinb": zinb.reshape(1),
               "q": q, "partners": partners, "e": e, "reg": reg.reshape(1)},
              os.path.join(OUT, "forward_io.safetensors"))


def get_kld_cycle(epoch, period=20):
    """SATURN's pretrain_utils.get_kld_cycle (train-saturn.py calls it with epoch - 1, period 50)."""
    ct = epoch % period
    pt = epoch % (period // 2)
    if ct >= period // 2:
        return 1
    return min(1, pt / (period // 2))


def vae_fixture():
    """The VAE variant in eval mode (the decoder gets mu), its per-cell KL, the pretraining loss
    of one species' batch with KL weight w (mean ZINB NLL + w * mean KL), and the KL cycle."""
    torch.manual_seed(1)
    genes, m, h, l = [12, 9], 6, 8, 5
    init_w = torch.rand(m, sum(genes)) * 0.9 + 0.05
    net = Saturn(genes, m, h, l, 0.1, init_w, vae=True)
    net.eval()
    x = torch.poisson(torch.rand(4, genes[0]) * 6.0)
    x[:, 0] += 1.0
    w = get_kld_cycle(37 - 1, period=50)  # epoch 37 of train-saturn.py = epoch 36 from 0
    with torch.no_grad():
        mg, z, px, mu, pi, theta = net(0, x)
        zinb = -log_zinb_positive(x, mu, theta, pi).sum(-1).mean()
        loss = zinb + w * net.kl.mean()
    cycle = torch.tensor([float(get_kld_cycle(e, period=50)) for e in range(120)], dtype=torch.float64)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(OUT, "vae_weights.safetensors"))
    save_file({"counts": x, "m": mg, "z": z, "mu": mu, "pi": pi, "kl": net.kl, "zinb": zinb.reshape(1),
               "loss": loss.reshape(1), "kl_weight": torch.tensor([w], dtype=torch.float64), "cycle": cycle},
              os.path.join(OUT, "vae_io.safetensors"))


def regulariser_fixture():
    torch.manual_seed(2)
    q, e = torch.randn(15, 8), torch.randn(15, 11)
    partners = torch.randint(15, (15,))
    q_leaf = q.clone().requires_grad_()
    reg = regulariser(q_leaf, e, partners)
    reg.backward()
    save_file({"q": q, "e": e, "partners": partners, "reg": reg.detach().reshape(1), "d_q": q_leaf.grad},
              os.path.join(OUT, "regulariser.safetensors"))


# ---------------------------------------------------------------- mining --------------------
def mine(sim, labels, species, margin, draws):
    """SATURN.md section 6; draw order and tie rules as documented in src/model/triplet.rs."""
    it = iter(draws)
    b = len(labels)

    def argmax(i, mask):
        cand = np.flatnonzero(mask)
        return None if len(cand) == 0 else cand[np.argmax(sim[i, cand])]

    def pick(cands):
        return cands[min(int(next(it) * len(cands)), len(cands) - 1)]

    out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        sp = species[members[0]]
        group = set(members.tolist())
        for p in members:
            n = argmax(p, species != sp)
            if n is None:
                continue
            back = argmax(n, species == sp)
            if back is not None and labels[back] == label:
                group.add(int(n))
        group = sorted(group)
        if len(group) < 2:
            continue
        for asp in sorted({species[i] for i in group}):
            positives = [i for i in group if species[i] != asp]
            if not positives:
                continue
            for a in [i for i in group if species[i] == asp]:
                p = pick(positives)
                neg = [j for j in range(b) if species[j] in (species[a], species[p])
                       and labels[j] != labels[a] and labels[j] != labels[p]]
                if not neg:
                    continue
                n = pick(neg)
                gap = sim[a, p] - sim[a, n]
                if 0 < gap <= margin:
                    out.append((a, p, n))
    return out


def triplet_loss(z, triplets, margin):
    """mean over triplets with positive loss of relu(S(a,n) - S(a,p) + margin)"""
    if not triplets:
        return torch.zeros(())
    t = torch.tensor(triplets)
    a, p, n = z[t[:, 0]], z[t[:, 1]], z[t[:, 2]]
    l = F.relu((a * n).sum(1) - (a * p).sum(1) + margin)
    return l.sum() / (l > 0).sum().clamp(min=1)


def mining_fixture():
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    # 3 species; labels are species-specific; cell types shared: A = {0, 3, 5}, B = {1, 4, 6}, C = {2, 7}
    species = np.array([0] * 12 + [1] * 8 + [2] * 10)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
                       5, 5, 5, 6, 6, 6, 7, 7, 7, 7])
    ctype = {0: 0, 3: 0, 5: 0, 1: 1, 4: 1, 6: 1, 2: 2, 7: 2}
    protos = rng.normal(size=(3, 16))
    z = np.stack([protos[ctype[l]] + 1.1 * rng.normal(size=16) for l in labels])
    z = F.normalize(torch.tensor(z, dtype=torch.float32), dim=1)
    sim = (z @ z.T).numpy()
    draws = rng.random(4000)
    margin = np.float32(0.2)
    triplets = mine(sim, labels, species, margin, draws)
    loss = triplet_loss(z, triplets, 0.2)
    save_file({"z": z, "sim": torch.from_numpy(sim), "labels": torch.from_numpy(labels).long(),
               "species": torch.from_numpy(species).long(), "draws": torch.from_numpy(draws),
               "triplets": torch.tensor(triplets, dtype=torch.int64).reshape(-1, 3),
               "loss": loss.reshape(1).float()},
              os.path.join(OUT, "mining.safetensors"))
    print("mining: kept", len(triplets), "triplets, loss", float(loss))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    zinb_fixture()
    rank_fixture()
    forward_fixture()
    regulariser_fixture()
    mining_fixture()
    vae_fixture()
