"""Chat templates for checkpoints built offline (the real Hub checkpoints carry their own)."""

# Mistral-7B-Instruct-v0.1's own template, as in its tokenizer_config.json on the Hub:
# <s>[INST] user [/INST]answer</s> [INST] next [/INST] ; turns must alternate; no system role.
MISTRAL_V1 = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)
