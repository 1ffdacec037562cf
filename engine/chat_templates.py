"""Chat templates for checkpoints built offline (the real Hub checkpoints carry their own)."""

# Mistral-7B-Instruct v0.1 format: <s>[INST] user [/INST] answer</s>[INST] ... ; no system role.
MISTRAL_V1 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Mistral v0.1 supports only user and assistant turns') }}"
    "{% endif %}{% endfor %}"
)
