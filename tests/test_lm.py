"End-to-end checks for finetune_notebooks.lm on a toy GPT-2 (fast, CPU)."
import random
import torch
import pytest
from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, DataCollatorForLanguageModeling
from finetune_notebooks.lm import pack_examples, seq_lens, PackedCollator, block_causal_mask, generate, generate_ids, perplexity

PAD, EOS = 96, 97

def toy_tokenizer():
    vocab = {f'w{i}': i for i in range(96)} | {'<|pad|>': PAD, '<|endoftext|>': EOS, '<unk>': 98}
    tok = Tokenizer(tok_models.WordLevel(vocab, unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token='<|pad|>', eos_token='<|endoftext|>',
                                   bos_token='<|endoftext|>', unk_token='<unk>')

def toy_model(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=99, n_positions=128,
                                      pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS, **kw)).eval()

@pytest.fixture(scope='module')
def examples():
    rng = random.Random(1)
    return [[rng.randrange(96) for _ in range(rng.randint(3, 30))] + [EOS] for _ in range(60)]

def test_packing_keeps_examples_whole(examples):
    blocks = pack_examples(examples, 64)
    got = []
    for b in blocks:
        assert len(b['input_ids']) <= 64
        s = 0
        for n in seq_lens(b['position_ids']):
            got.append(tuple(b['input_ids'][s:s + n])); s += n
    assert sorted(got) == sorted(map(tuple, examples))
    assert sum(map(len, examples)) / (64 * len(blocks)) > 0.9

def test_truncation_keeps_eos():
    (b,) = pack_examples([list(range(10)) + [EOS]], 5)
    assert b['input_ids'] == [0, 1, 2, 3, EOS]

def test_labels_at_boundaries_and_padding():
    batch = PackedCollator(PAD)(pack_examples([[1, 2, EOS], [3, EOS], [4, 5, 6, 7, EOS]], 5))
    assert batch['labels'].tolist() == [[-100, 2, EOS, -100, EOS], [-100, 5, 6, 7, EOS]]
    assert batch['position_ids'].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]

@pytest.mark.parametrize('attn,dtype', [('sdpa', torch.bool), ('eager', torch.float32)])
def test_packed_logits_equal_alone(examples, attn, dtype):
    model = toy_model(attn_implementation=attn)
    blocks = pack_examples(examples[:20], 64)
    batch = PackedCollator(PAD, mask_dtype=dtype)(blocks)
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != 'labels'}).logits
        leaky = model(input_ids=batch['input_ids'], position_ids=batch['position_ids'],
                      attention_mask=(batch['input_ids'] != PAD).long()).logits
        worst_leak = 0.0
        for r, b in enumerate(blocks):
            s = 0
            for n in seq_lens(b['position_ids']):
                alone = model(input_ids=torch.tensor([b['input_ids'][s:s + n]])).logits[0]
                assert torch.allclose(alone, packed[r, s:s + n], atol=1e-5)
                worst_leak = max(worst_leak, (alone - leaky[r, s:s + n]).abs().max().item()); s += n
    assert worst_leak > 1e-3  # negative control: without the 4-D mask, examples see each other

def test_perplexity_packed_equals_unpacked(examples):
    model, tok = toy_model(), toy_tokenizer()
    packed = PackedCollator(PAD)(pack_examples(examples, 64))
    plain = DataCollatorForLanguageModeling(tok, mlm=False)([{'input_ids': x} for x in examples])
    assert abs(perplexity(model, [packed]) - perplexity(model, [plain])) < 1e-3 * perplexity(model, [plain])

def test_batched_greedy_equals_one_at_a_time():
    model, tok = toy_model(), toy_tokenizer()
    prompts = ['w1 w2 w3 w4 w5 w6', 'w9', 'w40 w41']
    assert generate(model, tok, prompts, 'greedy', 10) == [generate(model, tok, p, 'greedy', 10)[0] for p in prompts]
    assert tok.padding_side == 'right'

def test_generation_stops_at_eos():
    model, tok = toy_model(tie_word_embeddings=False), toy_tokenizer()
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_(); model.transformer.ln_f.bias.fill_(1.0)
        model.lm_head.weight.zero_(); model.lm_head.weight[EOS] = 1.0
    assert generate_ids(model, tok, ['w1 w2', 'w3'], 'greedy', 20) == [[], []]
