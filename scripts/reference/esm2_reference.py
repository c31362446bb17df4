"""Reference outputs of Hugging Face transformers' ESM-2 for tests/integration/esm2_parity.rs.

Run with the reference environment (scripts/refenv.sh), from the repository root:

    ~/.cache/satlas/refenv/bin/python scripts/reference/esm2_reference.py

Writes
  fixtures/esm2/tiny/{config.json,model.safetensors,vocab.txt}
      a 2-layer, width-32, 4-head ESM-2 (rotary, token dropout) with seeded random weights,
      saved as `EsmModel.state_dict()` (keys without the `esm.` prefix);
  fixtures/esm2/tiny_reference.{safetensors,json}
      its outputs on a padded batch of short sequences (every token's hidden state after layer 1
      and after the final layer norm), on ids holding `<mask>` tokens, and pooled embeddings of two
      long sequences (truncation rule);
  fixtures/esm2/t6_reference.{safetensors,json}   (if ../shared/data is present)
      outputs of the real 6-layer weights in ../shared/data/esm2_t6_8M_finetuned on five human
      proteins (110 to 1474 residues, from ../shared/data/proteins/human_swissprot2014_baron_genes.fa):
      mean embeddings, and INS's full last hidden state.

Tokenisation and truncation follow SATURN (fair-esm <= 1.0 `extract.py --include mean --truncate`):
tokens = <cls> + residues + <eos>, cut to the first 1022 tokens, mean over the residue positions
1..=min(len, 1021) of the final representation (`t[i, 1 : len(strs[i]) + 1].mean(0)` on the cut
tensor). Each real protein is run alone (no padding); the short tiny batch is padded.
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import EsmConfig, EsmModel, EsmTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "fixtures", "esm2")
DATA = os.path.join(ROOT, "..", "shared", "data")
REAL = os.path.join(DATA, "esm2_t6_8M_finetuned")
FASTA = os.path.join(DATA, "proteins", "human_swissprot2014_baron_genes.fa")

VOCAB = ("<cls> <pad> <eos> <unk> L A G V S E R T I D P K Q N F Y M H W C X B U Z O . - "
         "<null_1> <mask>").split()
IDS = {t: i for i, t in enumerate(VOCAB)}
MAX_TOKENS = 1022  # fair-esm <= 1.0 extract.py --truncate: toks[:, :1022]


def encode(seq):
    """SATURN's rule: (token ids, number of residue positions kept)."""
    ids = [IDS["<cls>"]] + [IDS.get(c, IDS["<unk>"]) if len(c) == 1 else IDS["<unk>"] for c in seq]
    ids = (ids + [IDS["<eos>"]])[:MAX_TOKENS]
    return ids, min(len(seq), MAX_TOKENS - 1)


def pad_batch(encoded):
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), IDS["<pad>"], dtype=torch.int64)
    mask = torch.zeros((len(encoded), width), dtype=torch.int64)
    for i, (ids, _) in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    return input_ids, mask


def mean_over_residues(hidden, encoded):
    return torch.stack([hidden[i, 1 : n + 1].mean(0) for i, (_, n) in enumerate(encoded)])


def check_tokenizer(model_dir, seqs):
    """Our encode() agrees with transformers' EsmTokenizer wherever no truncation happens."""
    tok = EsmTokenizer(os.path.join(model_dir, "vocab.txt"))
    for s in seqs:
        ids, _ = encode(s)
        if len(s) + 2 <= MAX_TOKENS:
            assert tok(s)["input_ids"] == ids, s


def tiny():
    torch.manual_seed(20240501)
    config = EsmConfig(
        vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, position_embedding_type="rotary", token_dropout=True,
        emb_layer_norm_before=False, mask_token_id=32, pad_token_id=1, layer_norm_eps=1e-5,
        max_position_embeddings=1026, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = EsmModel(config, add_pooling_layer=False).eval()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    out_dir = os.path.join(FIX, "tiny")
    os.makedirs(out_dir, exist_ok=True)
    # The keys of the facebook/esm2_* hub checkpoints (transformers 5's save_pretrained would write
    # LayerNorm.gamma/.beta instead; the Rust loader accepts both, see tests/integration/esm2_parity.rs).
    config.save_pretrained(out_dir)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    short = ["MKTAYIAKQR", "GSHMLEDPVAGLLK", "ACDEFGHIKLMNPQRSTVWYXBUZO", "MJ-.Q", "W"]
    check_tokenizer(out_dir, short)
    gen = torch.Generator().manual_seed(7)
    residues = "LAGVSERTIDPKQNFYMHWC"
    long = ["".join(residues[i] for i in torch.randint(0, 20, (n,), generator=gen)) for n in (1100, 1021)]

    enc = [encode(s) for s in short]
    input_ids, mask = pad_batch(enc)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
        masked_ids = torch.tensor([[0, 5, 32, 4, 32, 6, 2], [0, 5, 6, 4, 5, 2, 1]])
        masked_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0]])
        masked = model(input_ids=masked_ids, attention_mask=masked_mask).last_hidden_state
        long_enc = [encode(s) for s in long]
        long_pooled = torch.cat([
            mean_over_residues(model(input_ids=torch.tensor([ids])).last_hidden_state, [(ids, n)])
            for ids, n in long_enc
        ])
    tensors = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "hidden_layer1": out.hidden_states[1].contiguous(),
        "last_hidden_state": out.last_hidden_state.contiguous(),
        "pooled": mean_over_residues(out.last_hidden_state, enc).contiguous(),
        "masked_input_ids": masked_ids,
        "masked_attention_mask": masked_mask,
        "masked_last_hidden_state": masked.contiguous(),
        "long_pooled": long_pooled.contiguous(),
    }
    save_file(tensors, os.path.join(FIX, "tiny_reference.safetensors"))
    with open(os.path.join(FIX, "tiny_reference.json"), "w") as f:
        json.dump({"short": short, "long": long,
                   "n_residues": [n for _, n in enc], "long_n_residues": [n for _, n in long_enc]},
                  f, indent=1)
    print("tiny: pooled[0][:4] =", tensors["pooled"][0, :4].tolist())


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


def real():
    if not os.path.isdir(REAL):
        print(f"skipping the real-weights reference: {REAL} is absent")
        return
    genes = ["INS", "GCG", "A1BG", "CD101", "A2M"]  # 110, 180, 495, 1021 (loses <eos>), 1474 residues
    proteins = read_fasta(FASTA, genes)
    model = EsmModel.from_pretrained(REAL, add_pooling_layer=False).eval()
    model.set_attn_implementation("eager")
    check_tokenizer(REAL, [s for _, s in proteins])
    pooled, lengths, n_res = [], [], []
    with torch.no_grad():
        for gene, seq in proteins:
            ids, n = encode(seq)
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state
            pooled.append(mean_over_residues(hidden, [(ids, n)])[0])
            lengths.append(len(seq))
            n_res.append(n)
            if gene == "INS":
                ins_hidden = hidden[0].contiguous()
    tensors = {"pooled": torch.stack(pooled).contiguous(), "ins_last_hidden_state": ins_hidden}
    save_file(tensors, os.path.join(FIX, "t6_reference.safetensors"))
    with open(os.path.join(FIX, "t6_reference.json"), "w") as f:
        json.dump({"genes": genes, "lengths": lengths, "n_residues": n_res,
                   "source": "../shared/data/proteins/human_swissprot2014_baron_genes.fa"}, f, indent=1)
    print("t6: pooled[:, :3] =", tensors["pooled"][:, :3].tolist())


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    print("torch", torch.__version__, "python", sys.version.split()[0])
    tiny()
    real()
