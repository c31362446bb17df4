"""fair-esm `.pt` checkpoints and fair-esm's own outputs for tests/integration/fair_esm.rs.

Run with the reference environment (scripts/refenv.sh, which installs fair-esm 2.0.0), from the
repository root:

    ~/.cache/satlas/refenv/bin/python scripts/reference/fair_esm_reference.py

Every checkpoint is written the way fair-esm's published ones are (`esm2_t33_650M_UR50D.pt`):
torch.save({"model": state_dict, "cfg": {"model": argparse.Namespace(...)}}) with the backbone
under `encoder.sentence_encoder.` and the LM head under `encoder.` (the contact-regression weights
live in a separate `<name>-contact-regression.pt`, as published). Each is checked by loading it with
fair-esm's own `esm.pretrained.load_model_and_alphabet_local` (strict), so the layout is the one
fair-esm reads; the references are the outputs of the model fair-esm loaded.

Writes, under fixtures/fair_esm/:
  esm2_t2_tiny.pt                a 2-layer, width-32, 4-head ESM-2 (fair-esm `ESM2`, seeded random
                                 weights; `rot_emb.inv_freq` rounded to float16 as in the published
                                 checkpoints, so it differs from the formula)
  tiny_reference.{safetensors,json}
                                 fair-esm's representations (layer 1 and final) of a padded batch of
                                 short sequences, and mean embeddings of two long ones under SATURN's
                                 truncation rule (<cls> residues <eos> cut to 1022 tokens)
  bad/*.pt                       small broken checkpoints for the error tests
  t6/{data.pkl,storages.json,reference.safetensors,reference.json}   (if ../shared/data is present)
                                 ../shared/data/esm2_t6_8M_finetuned converted to the fair-esm layout.
                                 The 31 MB checkpoint is not committed: only its pickle and, per
                                 storage, where its bytes come from (a tensor of the Hugging Face
                                 safetensors, or a constant for the LM head the fine-tuned model
                                 lacks); the test reassembles the archive. The script checks the
                                 reassembly is byte-identical, and stores fair-esm's mean embeddings
                                 of five human proteins (110 to 1474 residues).
"""

import argparse
import io
import json
import os
import pickle
import shutil
import sys
import tempfile
import zipfile

import esm
import torch
from esm.model.esm2 import ESM2
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "fixtures", "fair_esm")
DATA = os.path.join(ROOT, "..", "shared", "data")
REAL = os.path.join(DATA, "esm2_t6_8M_finetuned")
FASTA = os.path.join(DATA, "proteins", "human_swissprot2014_baron_genes.fa")
MAX_TOKENS = 1022  # fair-esm <= 1.0 extract.py --truncate: toks[:, :1022] (SATURN)

ALPHABET = esm.data.Alphabet.from_architecture("ESM-1b")

# fair-esm name (after layers.N.) -> Hugging Face name (after encoder.layer.N.), as convert_esm.py
LAYER_MAP = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "LayerNorm",
    "self_attn.rot_emb": "attention.self.rotary_embeddings",
}


def namespace(layers, dim, heads, **extra):
    """The cfg["model"] fields fair-esm reads, plus a few it ignores (as in real checkpoints)."""
    return argparse.Namespace(
        arch="roberta_large", encoder_layers=layers, encoder_embed_dim=dim,
        encoder_ffn_embed_dim=4 * dim, encoder_attention_heads=heads, token_dropout=True,
        dropout=0.0, attention_dropout=0.0, max_positions=1024, **extra)


def fair_state(model):
    """A fair-esm model's state dict under the prefixes of the published checkpoints (without the
    contact head, which is published separately)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("contact_head."):
            continue
        out[("encoder." if k.startswith("lm_head.") else "encoder.sentence_encoder.") + k] = v
    return out


def contact_state(model):
    return {k: v for k, v in model.state_dict().items() if k.startswith("contact_head.")}


def save_checkpoint(path, model, cfg):
    torch.save({"model": fair_state(model), "cfg": {"model": cfg}}, path)


def load_with_fair_esm(path, model):
    """fair-esm's loader on a copy of `path` next to its contact-regression file (strict load)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, os.path.basename(path))
        shutil.copy(path, local)
        torch.save({"model": contact_state(model)}, local[:-3] + "-contact-regression.pt")
        # torch >= 2.6 loads weights_only by default, which refuses the Namespace in "cfg"
        # (fair-esm 2.0.0 predates that); allow exactly that class.
        with torch.serialization.safe_globals([argparse.Namespace]):
            loaded, alphabet = esm.pretrained.load_model_and_alphabet_local(local)
    assert alphabet.all_toks == ALPHABET.all_toks
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    return loaded.eval()


def encode(seq):
    """SATURN's rule: (token ids, number of residue positions kept)."""
    ids = [ALPHABET.cls_idx] + [ALPHABET.get_idx(c) for c in seq] + [ALPHABET.eos_idx]
    return ids[:MAX_TOKENS], min(len(seq), MAX_TOKENS - 1)


def pad_batch(encoded):
    width = max(len(ids) for ids, _ in encoded)
    tokens = torch.full((len(encoded), width), ALPHABET.padding_idx, dtype=torch.int64)
    for i, (ids, _) in enumerate(encoded):
        tokens[i, : len(ids)] = torch.tensor(ids)
    return tokens


def mean_embedding(model, seq):
    ids, n = encode(seq)
    with torch.no_grad():
        out = model(torch.tensor([ids]), repr_layers=[model.num_layers])
    return out["representations"][model.num_layers][0, 1 : n + 1].mean(0)


def randomise(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
        for layer in model.layers:
            inv = layer.self_attn.rot_emb.inv_freq
            inv.copy_(inv.half().float())


def tiny():
    model = ESM2(num_layers=2, embed_dim=32, attention_heads=4, alphabet=ALPHABET).eval()
    randomise(model, 20240502)
    path = os.path.join(FIX, "esm2_t2_tiny.pt")
    save_checkpoint(path, model, namespace(2, 32, 4))
    model = load_with_fair_esm(path, model)
    short = ["MKTAYIAKQR", "GSHMLEDPVAGLLK", "ACDEFGHIKLMNPQRSTVWYXBUZO", "W"]
    gen = torch.Generator().manual_seed(11)
    residues = "LAGVSERTIDPKQNFYMHWC"
    long = ["".join(residues[i] for i in torch.randint(0, 20, (n,), generator=gen)) for n in (1300, 1021)]
    enc = [encode(s) for s in short]
    tokens = pad_batch(enc)
    with torch.no_grad():
        out = model(tokens, repr_layers=[1, 2])
    tensors = {
        "tokens": tokens,
        "layer1": out["representations"][1].contiguous(),
        "last": out["representations"][2].contiguous(),
        "pooled": torch.stack([out["representations"][2][i, 1 : n + 1].mean(0) for i, (_, n) in enumerate(enc)]),
        "long_pooled": torch.stack([mean_embedding(model, s) for s in long]),
    }
    save_file(tensors, os.path.join(FIX, "tiny_reference.safetensors"))
    with open(os.path.join(FIX, "tiny_reference.json"), "w") as f:
        json.dump({"short": short, "long": long, "fair_esm": esm.__version__}, f, indent=1)
    print("tiny: pooled[0][:4] =", tensors["pooled"][0, :4].tolist())


def bad():
    """Broken checkpoints, each wrong in one way (width 8, so a few KB each)."""
    out = os.path.join(FIX, "bad")
    os.makedirs(out, exist_ok=True)
    model = ESM2(num_layers=2, embed_dim=8, attention_heads=2, alphabet=ALPHABET).eval()
    randomise(model, 3)
    state = fair_state(model)
    cfg = {"model": namespace(2, 8, 2)}
    torch.save({"cfg": cfg, "args": None}, os.path.join(out, "no_model.pt"))
    esm1b = dict(state)
    esm1b["encoder.sentence_encoder.embed_positions.weight"] = torch.zeros(10, 8)
    torch.save({"model": esm1b, "cfg": cfg}, os.path.join(out, "esm1b_names.pt"))
    missing = {k: v for k, v in state.items() if k != "encoder.sentence_encoder.layers.1.fc2.weight"}
    torch.save({"model": missing, "cfg": cfg}, os.path.join(out, "missing_layer_tensor.pt"))
    complex_ = dict(state)
    complex_["encoder.sentence_encoder.embed_tokens.weight"] = torch.zeros(33, 8, dtype=torch.complex64)
    torch.save({"model": complex_, "cfg": cfg}, os.path.join(out, "complex_storage.pt"))
    torch.save({"model": state, "cfg": {}}, os.path.join(out, "no_heads_width8.pt"))
    torch.save({"model": state, "cfg": {"model": namespace(3, 8, 2)}},
               os.path.join(out, "cfg_disagrees.pt"))


def read_fasta(path, wanted):
    seqs, name = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                name = line[1:].split()[0]
                seqs[name] = [] if name in wanted else None
            elif seqs.get(name) is not None:
                seqs[name].append(line)
    return [(g, "".join(seqs[g])) for g in wanted]


def hf_name(fair):
    """The Hugging Face safetensors key of a fair-esm backbone name, or None (LM head)."""
    if fair == "embed_tokens.weight":
        return "esm.embeddings.word_embeddings.weight"
    if fair.startswith("emb_layer_norm_after."):
        return "esm.encoder." + fair
    if fair.startswith("layers."):
        _, n, rest = fair.split(".", 2)
        stem, leaf = rest.rsplit(".", 1)
        return f"esm.encoder.layer.{n}.{LAYER_MAP[stem]}.{leaf}"
    return None


def real():
    if not os.path.isdir(REAL):
        print(f"skipping the real-weights checkpoint: {REAL} is absent")
        return
    hf = load_file(os.path.join(REAL, "model.safetensors"))
    model = ESM2(num_layers=6, embed_dim=320, attention_heads=20, alphabet=ALPHABET).eval()
    sources = {}  # fair-esm name -> HF key, or a constant for the LM head
    with torch.no_grad():
        for name, p in model.state_dict().items():
            key = hf_name(name)
            if key is not None:
                p.copy_(hf[key])
                sources[name] = key
            elif name.startswith("lm_head.") and name != "lm_head.weight":
                p.fill_(1.0 if name == "lm_head.layer_norm.weight" else 0.0)
                sources[name] = 1.0 if name == "lm_head.layer_norm.weight" else 0.0
    out = os.path.join(FIX, "t6")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "esm2_t6_8M_finetuned.pt")
        save_checkpoint(path, model, namespace(6, 320, 20))
        model = load_with_fair_esm(path, model)
        storages = describe_storages(path, model, sources, hf)
        with zipfile.ZipFile(path) as z:
            prefix = z.namelist()[0].split("/")[0]
            with open(os.path.join(out, "data.pkl"), "wb") as f:
                f.write(z.read(f"{prefix}/data.pkl"))
    with open(os.path.join(out, "storages.json"), "w") as f:
        json.dump({"archive": "esm2_t6_8M_finetuned", "storages": storages}, f, indent=1)
    genes = ["INS", "GCG", "A1BG", "CD101", "A2M"]  # 110, 180, 495, 1021 (loses <eos>), 1474 residues
    proteins = read_fasta(FASTA, genes)
    pooled = torch.stack([mean_embedding(model, s) for _, s in proteins])
    save_file({"pooled": pooled.contiguous()}, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"genes": genes, "lengths": [len(s) for _, s in proteins],
                   "source": "../shared/data/proteins/human_swissprot2014_baron_genes.fa",
                   "fair_esm": esm.__version__}, f, indent=1)
    print("t6: pooled[:, :3] =", pooled[:, :3].tolist())


def describe_storages(path, model, sources, hf):
    """Per storage key of the archive (all float32): {"hf": safetensors key} or {"fill": constant,
    "numel": elements}, checked bytewise against the archive."""
    state = fair_state(model)

    class StorageKeys(pickle.Unpickler):
        """Unpickles the checkpoint with every tensor replaced by its storage key."""

        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, *rest: storage
            return super().find_class(module, name)

        def persistent_load(self, pid):
            return pid[2]

    by_key = {}
    with zipfile.ZipFile(path) as z:
        prefix = z.namelist()[0].split("/")[0]
        keys = StorageKeys(io.BytesIO(z.read(f"{prefix}/data.pkl"))).load()["model"]
        assert list(keys) == list(state)
        for name, key in keys.items():
            short = name.removeprefix("encoder.sentence_encoder.").removeprefix("encoder.")
            # lm_head.weight is embed_tokens.weight (tied): one storage.
            source = sources["embed_tokens.weight" if short == "lm_head.weight" else short]
            data = z.read(f"{prefix}/data/{key}")
            expected = hf[source] if isinstance(source, str) else torch.full_like(state[name], source)
            assert data == expected.contiguous().numpy().tobytes(), name
            entry = {"hf": source} if isinstance(source, str) else {
                "fill": source, "numel": state[name].numel()}
            assert by_key.get(key, entry) == entry, name
            by_key[key] = entry
    return by_key


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    print("torch", torch.__version__, "fair-esm", esm.__version__, "python", sys.version.split()[0])
    os.makedirs(FIX, exist_ok=True)
    tiny()
    bad()
    real()
