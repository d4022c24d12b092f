//! Built-in templates, the resolver, errors, hostile templates, and the Python behaviours
//! templates depend on. Expected strings of Python behaviours were printed by transformers'
//! `render_jinja_template` (jinja2 3.1.6).

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn chat(system: bool) -> Vec<serde_json::Value> {
    let mut m = vec![
        message("user", "Hi"),
        message("assistant", "Hello!"),
        message("user", "How are you?"),
    ];
    if system {
        m.insert(0, message("system", "You are a helpful assistant."));
    }
    m
}

fn opts(bos: &str, eos: &str) -> RenderOptions {
    RenderOptions {
        add_generation_prompt: true,
        bos_token: Some(bos.into()),
        eos_token: Some(eos.into()),
        now: TemplateTime::parse("2024-07-26T09:05:03"),
        ..Default::default()
    }
}

/// Renders `src` with no messages and `tools = None`, as a one-line template.
fn py(src: &str) -> Result<String> {
    ChatTemplate::new("t", src)?.render(&[], &opts("<s>", "</s>"))
}

fn builtin_render(name: &str, system: bool, bos: &str) -> String {
    ChatTemplate::builtin(name)
        .unwrap()
        .render(&chat(system), &opts(bos, "</s>"))
        .unwrap()
}

#[test]
fn vicuna_is_fastchat_v1_1() {
    assert_eq!(
        builtin_render("vicuna-v1.1", true, "<s>"),
        "You are a helpful assistant. USER: Hi ASSISTANT: Hello!</s>USER: How are you? ASSISTANT:"
    );
    assert_eq!(
        builtin_render("vicuna_v1.1", false, "<s>"),
        "A chat between a curious user and an artificial intelligence assistant. The assistant \
         gives helpful, detailed, and polite answers to the user's questions. USER: Hi ASSISTANT: \
         Hello!</s>USER: How are you? ASSISTANT:"
    );
}

#[test]
fn alpaca_is_fastchat_alpaca() {
    assert_eq!(
        builtin_render("alpaca", false, "<s>"),
        "Below is an instruction that describes a task. Write a response that appropriately \
         completes the request.\n\n### Instruction: Hi\n\n### Response: Hello!</s>### \
         Instruction: How are you?\n\n### Response:"
    );
}

#[test]
fn chatml_llama_zephyr() {
    assert_eq!(
        builtin_render("chatml", true, "<s>"),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    assert_eq!(
        builtin_render("llama2", true, "<s>"),
        "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] How are you? [/INST]"
    );
    assert_eq!(
        builtin_render("llama2", false, "<s>"),
        "<s>[INST] Hi [/INST] Hello! </s><s>[INST] How are you? [/INST]"
    );
    assert_eq!(
        builtin_render("Llama-3", true, "<|begin_of_text|>"),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful \
         assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user\
         <|end_header_id|>\n\nHow are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(
        builtin_render("zephyr", true, "<s>"),
        "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n\
         <|user|>\nHow are you?</s>\n<|assistant|>\n"
    );
}

#[test]
fn llama2_refuses_non_alternating_roles() {
    let t = ChatTemplate::builtin("llama2").unwrap();
    let msgs = [message("user", "a"), message("user", "b")];
    match t.render(&msgs, &opts("<s>", "</s>")) {
        Err(Error::Template(TemplateError::Raised { name, message })) => {
            assert_eq!(name, "llama2");
            assert_eq!(
                message,
                "Conversation roles must alternate user/assistant/user/assistant/..."
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn resolver_picks_builtin_file_model_or_says_what_exists() {
    assert_eq!(
        ChatTemplate::resolve(Some("ChatML"), Some("x"))
            .unwrap()
            .name(),
        "chatml"
    );
    assert_eq!(
        ChatTemplate::resolve(None, Some("{{ 'own' }}"))
            .unwrap()
            .render(&[], &RenderOptions::default())
            .unwrap(),
        "own"
    );

    let dir = tempfile::tempdir().unwrap();
    let jinja = dir.path().join("t.jinja");
    std::fs::write(
        &jinja,
        "{% for m in messages %}[{{ m.content }}]{% endfor %}\n",
    )
    .unwrap();
    let t = ChatTemplate::resolve(jinja.to_str(), Some("model's")).unwrap();
    assert_eq!(
        t.render(&chat(false), &RenderOptions::default()).unwrap(),
        "[Hi][Hello!][How are you?]"
    );
    let cfg = dir.path().join("tokenizer_config.json");
    let list = json!({"chat_template": [
        {"name": "tool_use", "template": "tools"},
        {"name": "default", "template": "{{ bos_token }}default"}]});
    std::fs::write(&cfg, list.to_string()).unwrap();
    let t = ChatTemplate::resolve(cfg.to_str(), None).unwrap();
    assert_eq!(t.render(&[], &opts("<s>", "</s>")).unwrap(), "<s>default");

    for (choice, model) in [(Some("no-such-template"), Some("x")), (None, None)] {
        let e = ChatTemplate::resolve(choice, model)
            .unwrap_err()
            .to_string();
        for name in builtin_names() {
            assert!(e.contains(name), "{e}");
        }
    }
}

#[test]
fn errors_name_template_and_line() {
    let e = ChatTemplate::new("my-model", "line one\n{% if %}\n").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("'my-model'") && text.contains("line 2"),
        "{text}"
    );

    let e = ChatTemplate::new("m", "ok\n\n{{ messages[0].content.nope() }}")
        .unwrap()
        .render(&chat(false), &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'m'") && e.contains("line 3") && e.contains("nope()"),
        "{e}"
    );
}

#[test]
fn raise_exception_gives_the_templates_message() {
    let src = "{% macro check(m) %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% endmacro %}\
               {% for m in messages %}{{ check(m) }}{% endfor %}";
    let e = ChatTemplate::new("gemma", src)
        .unwrap()
        .render(&chat(true), &RenderOptions::default())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "chat template 'gemma' refused the conversation: System role not supported"
    );
}

#[test]
fn hostile_templates_fail_quickly() {
    let hostile = [
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
        "{{ range(1000000000) | list }}",
        "{{ 'x' * 1000000000 }}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        // Not here: doubling a *list* 33 times (`{% set l = l + l %}`). minijinja 3.1 charges no
        // fuel for list concatenation and flattens a chain deeper than 32 eagerly, so that
        // template allocates 2^33 items (Python would too); see the module's documentation.
        "{% set ns = namespace(s=[1]) %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{% for x in ns.s %}{% endfor %}",
        "{{ ('x' * 10000000).replace('x', 'y' * 100) | tojson | length }}",
    ];
    for src in hostile {
        let start = Instant::now();
        let r = py(src);
        assert!(
            r.is_err(),
            "{src} rendered {} bytes",
            r.map(|s| s.len()).unwrap_or(0)
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{src} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn values_print_as_python_prints_them() {
    assert_eq!(
        py("{{ true }}|{{ none }}|{{ [1, 'a', none, 2.5] }}|{{ {'k': false} }}|{{ true|string }}")
            .unwrap(),
        "True|None|[1, 'a', None, 2.5]|{'k': False}|True"
    );
    assert_eq!(
        py("{{ {'a': 1}.items()|list }}|{{ {'a': 1}.get('b', 'd') }}|{{ dict(a=1) }}").unwrap(),
        "[('a', 1)]|d|{'a': 1}"
    );
}

#[test]
fn tojson_is_json_dumps() {
    assert_eq!(
        py("{{ {'b': 1, 'a': [1, 2]}|tojson }}|{{ {'b': 1, 'a': [1, 2]}|tojson(indent=2, sort_keys=true) }}|{{ 'é\"<'|tojson }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ [1,2]|tojson(separators=(',', ':')) }}").unwrap(),
        "{\"b\": 1, \"a\": [1, 2]}|{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": 1\n}|\"é\\\"<\"|\"\\u00e9\"|[1,2]"
    );
    // Jinja2's `map` makes a generator, which json.dumps refuses.
    assert!(py("{{ [{'a': 1}] | map(attribute='a') | tojson }}").is_err());
    assert_eq!(
        py("{{ [{'a': 1}] | map(attribute='a') | list | tojson }}").unwrap(),
        "[1]"
    );
}

#[test]
fn python_string_methods() {
    assert_eq!(
        py("{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ ' a  b c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b c'.split(none, 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'hello world'.title() }}|{{ 'abc'[::-1] }}|{{ 'abc'.startswith(('x','a')) }}").unwrap(),
        "a b|a|['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b c']|['a,b', 'c']|Hello World|cba|True"
    );
}

#[test]
fn loop_controls_namespace_clock_and_none_tools() {
    assert_eq!(
        py("{% set ns = namespace(n=0) %}{% for i in range(10) %}{% if i == 5 %}{% break %}{% endif %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}|{{ x is defined }}|{{ tools is none }}|{{ strftime_now('%d %b %Y') }}").unwrap(),
        "10|False|True|26 Jul 2024"
    );
    // transformers passes tools=None, which Python cannot iterate: tool-only templates refuse.
    assert!(py("{% for t in tools %}{{ t }}{% endfor %}").is_err());
    // The immutable sandbox: no mutation of lists.
    assert!(py("{% set l = [] %}{{ l.append(1) }}").is_err());
}

#[test]
fn generation_blocks_render_their_content() {
    assert_eq!(
        py(
            "{% generation %}A{% endgeneration %}\n{%- generation -%}\n  B\n{%- endgeneration %}\nC"
        )
        .unwrap(),
        "ABC"
    );
}

#[test]
fn messages_are_normalised_like_transformers() {
    let t = ChatTemplate::new(
        "t",
        "{% for m in messages %}{{ m.keys()|list }}{{ m.thinking }}|{{ m.reasoning_content }};{% endfor %}",
    )
    .unwrap();
    let msgs = [
        json!({"role": "assistant", "content": null, "reasoning": "hmm"}),
        json!({"role": "user", "content": "x"}),
    ];
    assert_eq!(
        t.render(&msgs, &RenderOptions::default()).unwrap(),
        "['thinking', 'role', 'reasoning', 'reasoning_content']hmm|hmm;['role', 'content']|;"
    );
    assert!(
        t.render(&[json!("not an object")], &RenderOptions::default())
            .is_err()
    );
}
