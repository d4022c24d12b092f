//! Named chat templates for models whose files carry none (older fine-tunes, GGUFs converted
//! without `tokenizer.chat_template`). Each is written as Jinja so that it goes through the same
//! renderer as the models' own templates; each comment names the format it reproduces.

/// `(name, Jinja source)`, in the order error messages list them.
pub const BUILTIN: [(&str, &str); 6] = [
    ("vicuna-v1.1", VICUNA_V1_1),
    ("alpaca", ALPACA),
    ("chatml", CHATML),
    ("llama2", LLAMA2),
    ("llama3", LLAMA3),
    ("zephyr", ZEPHYR),
];

/// FastChat's `vicuna_v1.1` conversation (`fastchat/conversation.py`: roles `USER`/`ASSISTANT`,
/// `SeparatorStyle.ADD_COLON_TWO`, `sep=" "`, `sep2="</s>"`): the system message, then
/// `USER: text ASSISTANT: text</s>` per turn, and a bare `ASSISTANT:` to prompt the model. A
/// system message in the chat replaces FastChat's default one.
const VICUNA_V1_1: &str = r#"{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system_message = messages[0]['content'] -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set system_message = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions." -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{{- system_message + ' ' -}}
{%- for message in loop_messages -%}
    {%- if message['role'] == 'user' -%}
        {{- 'USER: ' + message['content'] + ' ' -}}
    {%- elif message['role'] == 'assistant' -%}
        {{- 'ASSISTANT: ' + message['content'] + '</s>' -}}
    {%- else -%}
        {{- raise_exception('vicuna-v1.1 has no role ' ~ message['role'] ~ ': only system, user and assistant') -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'ASSISTANT:' -}}
{%- endif -%}"#;

/// FastChat's `alpaca` conversation (`fastchat/conversation.py`: roles `### Instruction` /
/// `### Response`, `SeparatorStyle.ADD_COLON_TWO`, `sep="\n\n"`, `sep2="</s>"`, and Stanford
/// Alpaca's preamble as the default system message).
const ALPACA: &str = r#"{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system_message = messages[0]['content'] -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set system_message = 'Below is an instruction that describes a task. Write a response that appropriately completes the request.' -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{{- system_message + '\n\n' -}}
{%- for message in loop_messages -%}
    {%- if message['role'] == 'user' -%}
        {{- '### Instruction: ' + message['content'] + '\n\n' -}}
    {%- elif message['role'] == 'assistant' -%}
        {{- '### Response: ' + message['content'] + '</s>' -}}
    {%- else -%}
        {{- raise_exception('alpaca has no role ' ~ message['role'] ~ ': only system, user and assistant') -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '### Response:' -}}
{%- endif -%}"#;

/// ChatML as transformers' documentation and most ChatML fine-tunes (OpenHermes, Qwen 1.5)
/// ship it: `<|im_start|>role\ncontent<|im_end|>\n` per message, no default system message.
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// `meta-llama/Llama-2-7b-chat-hf`'s `chat_template` (tokenizer_config.json), which reproduces
/// Meta's `generation.py`: `<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s>`.
/// With `bos_token` `<s>` and `eos_token` `</s>` from the tokenizer.
const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// `meta-llama/Meta-Llama-3-8B-Instruct`'s `chat_template`: a header per message, content
/// trimmed, `<|eot_id|>` after each; `bos_token` is `<|begin_of_text|>`.
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/// `HuggingFaceH4/zephyr-7b-beta`'s `chat_template`: `<|role|>\ncontent</s>` and a newline per
/// message, `<|assistant|>\n` to prompt; `eos_token` is `</s>`.
const ZEPHYR: &str = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

/// The source of a built-in template, by name (`vicuna_v1.1`, `Llama-3` and such spellings too).
pub fn builtin(name: &str) -> Option<(&'static str, &'static str)> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = norm(name);
    BUILTIN.iter().copied().find(|(n, _)| norm(n) == wanted)
}
