//! The licence catalogue: each licence herd knows, under its SPDX identifier where SPDX has
//! one and under a named model-licence id otherwise (the Hugging Face hub's id where it has
//! one: `llama2`, `llama3.1`, `gemma` …), with the conditions that decide commercial use.
//!
//! The terms are summaries for deciding whether to look closer, not legal advice: every
//! condition herd prints names the licence it comes from, and the licence text is the
//! authority.

use serde::{Deserialize, Serialize};

/// What a licence says about commercial use, before any lineage is combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Commercial {
    /// Commercial use, closed derivatives included; notices may have to be kept.
    Allowed,
    /// Commercial use under conditions that can forbid it or constrain the product (user
    /// counts, naming, use policies, share-alike).
    Conditional,
    /// Non-commercial or research-only.
    NotAllowed,
}

/// A licence and the conditions that decide commercial use.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Terms {
    pub id: String,
    pub name: String,
    /// Whether `id` is an SPDX licence identifier.
    pub spdx: bool,
    /// The Hugging Face hub's `license:` value, when the hub has one for this licence.
    pub hf_id: Option<String>,
    pub link: Option<String>,
    pub commercial: Commercial,
    pub attribution: Option<String>,
    pub share_alike: bool,
    pub no_derivatives: bool,
    pub non_commercial: bool,
    /// Monthly active users above which the licensor's separate permission is needed.
    pub user_threshold: Option<u64>,
    pub naming: Option<String>,
    pub use_restrictions: Option<String>,
    /// Limits on using the model or its outputs to build other models.
    pub output_restrictions: Option<String>,
    pub other: Vec<String>,
}

impl Terms {
    /// The conditions to honour, one sentence each.
    pub fn conditions(&self) -> Vec<String> {
        let mut c = Vec::new();
        if self.non_commercial {
            c.push("non-commercial use only".to_string());
        }
        if let Some(n) = self.user_threshold {
            c.push(format!(
                "more than {} monthly active users (on the release date, for Llama) needs a separate licence from the licensor",
                human_users(n)
            ));
        }
        if let Some(n) = &self.naming {
            c.push(n.clone());
        }
        if let Some(u) = &self.use_restrictions {
            c.push(u.clone());
        }
        if let Some(o) = &self.output_restrictions {
            c.push(o.clone());
        }
        if self.share_alike {
            c.push("share-alike: what you build from it must be shared under the same licence (no closed derivatives)".to_string());
        }
        if self.no_derivatives {
            c.push("no derivatives: adapted material (arguably a model trained on it) may not be shared".to_string());
        }
        if let Some(a) = &self.attribution {
            c.push(a.clone());
        }
        c.extend(self.other.iter().cloned());
        c
    }
}

fn human_users(n: u64) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{} million", n / 1_000_000)
    } else {
        n.to_string()
    }
}

/// A catalogue entry with static fields; [`Terms`] is its owned form.
struct Entry {
    id: &'static str,
    name: &'static str,
    spdx: bool,
    hf: Option<&'static str>,
    link: Option<&'static str>,
    commercial: Commercial,
    attribution: Option<&'static str>,
    share_alike: bool,
    non_commercial: bool,
    users: Option<u64>,
    naming: Option<&'static str>,
    use_restrictions: Option<&'static str>,
    outputs: Option<&'static str>,
    other: &'static [&'static str],
    /// Other ways the licence is written (space-separated tokens, as `text::phrase_tokens`
    /// makes them); the id and hub id are aliases already.
    aliases: &'static [&'static str],
}

const KEEP_NOTICE: Option<&str> =
    Some("attribution: keep the copyright and licence notice in copies");
const PERMISSIVE: Entry = Entry {
    id: "",
    name: "",
    spdx: true,
    hf: None,
    link: None,
    commercial: Commercial::Allowed,
    attribution: KEEP_NOTICE,
    share_alike: false,
    non_commercial: false,
    users: None,
    naming: None,
    use_restrictions: None,
    outputs: None,
    other: &[],
    aliases: &[],
};
const COPYLEFT: Entry = Entry {
    commercial: Commercial::Conditional,
    share_alike: true,
    ..PERMISSIVE
};
const LLAMA_AUP: Option<&str> = Some(
    "use restrictions: follow Meta's Acceptable Use Policy for Llama, which the licence incorporates",
);
const LLAMA31_NAMING: Option<&str> = Some(
    "naming: display \"Built with Llama\" prominently, and a model made from it must have a name that begins with \"Llama\"",
);
const RAIL_USE: Option<&str> = Some(
    "use restrictions: the licence's use-based restrictions (its Attachment A) apply, and must be passed on as enforceable terms to anyone who receives the model or a derivative",
);
const RAIL: Entry = Entry {
    spdx: false,
    commercial: Commercial::Conditional,
    attribution: Some("attribution: give recipients a copy of the licence and keep its notices"),
    use_restrictions: RAIL_USE,
    ..PERMISSIVE
};

static ENTRIES: &[Entry] = &[
    Entry {
        id: "Apache-2.0",
        name: "Apache License 2.0",
        hf: Some("apache-2.0"),
        link: Some("https://www.apache.org/licenses/LICENSE-2.0"),
        attribution: Some(
            "attribution: keep the licence, copyright and NOTICE file in copies and mark files you changed",
        ),
        aliases: &[
            "apache 2",
            "apache v 2",
            "apache license 2 0",
            "apache license version 2 0",
            "apache license v 2 0",
            "apache software license 2 0",
            "asl 2 0",
        ],
        ..PERMISSIVE
    },
    Entry {
        id: "MIT",
        name: "MIT License",
        hf: Some("mit"),
        link: Some("https://opensource.org/license/mit"),
        aliases: &["mit license", "expat"],
        ..PERMISSIVE
    },
    Entry {
        id: "BSD-2-Clause",
        name: "BSD 2-Clause License",
        hf: Some("bsd-2-clause"),
        aliases: &["simplified bsd", "freebsd license"],
        ..PERMISSIVE
    },
    Entry {
        id: "BSD-3-Clause",
        name: "BSD 3-Clause License",
        hf: Some("bsd-3-clause"),
        other: &["do not use the copyright holders' names to endorse products made from it"],
        aliases: &["new bsd", "modified bsd", "revised bsd"],
        ..PERMISSIVE
    },
    Entry {
        id: "ISC",
        name: "ISC License",
        hf: Some("isc"),
        ..PERMISSIVE
    },
    Entry {
        id: "BSL-1.0",
        name: "Boost Software License 1.0",
        hf: Some("bsl-1.0"),
        ..PERMISSIVE
    },
    Entry {
        id: "Zlib",
        name: "zlib License",
        hf: Some("zlib"),
        ..PERMISSIVE
    },
    Entry {
        id: "CC0-1.0",
        name: "Creative Commons Zero v1.0 Universal (public domain dedication)",
        hf: Some("cc0-1.0"),
        attribution: None,
        aliases: &["cc 0", "cc zero", "creative commons zero"],
        ..PERMISSIVE
    },
    Entry {
        id: "Unlicense",
        name: "The Unlicense (public domain dedication)",
        hf: Some("unlicense"),
        attribution: None,
        ..PERMISSIVE
    },
    Entry {
        id: "PDDL-1.0",
        name: "Open Data Commons Public Domain Dedication and License 1.0",
        hf: Some("pddl"),
        attribution: None,
        aliases: &["pddl", "odc pddl"],
        ..PERMISSIVE
    },
    Entry {
        id: "ODC-By-1.0",
        name: "Open Data Commons Attribution License 1.0",
        hf: Some("odc-by"),
        attribution: Some("attribution: credit the database as the licence asks"),
        aliases: &["odc by", "open data commons attribution license"],
        ..PERMISSIVE
    },
    Entry {
        id: "CDLA-Permissive-2.0",
        name: "Community Data License Agreement – Permissive 2.0",
        hf: Some("cdla-permissive-2.0"),
        attribution: Some("attribution: keep the licence text with the data"),
        ..PERMISSIVE
    },
    Entry {
        id: "ODbL-1.0",
        name: "Open Data Commons Open Database License 1.0",
        hf: Some("odbl"),
        aliases: &["odbl", "open database license"],
        ..COPYLEFT
    },
    Entry {
        id: "CDLA-Sharing-1.0",
        name: "Community Data License Agreement – Sharing 1.0",
        hf: Some("cdla-sharing-1.0"),
        ..COPYLEFT
    },
    Entry {
        id: "GPL-2.0-only",
        name: "GNU General Public License v2.0",
        hf: Some("gpl-2.0"),
        aliases: &[
            "gpl 2 0",
            "gpl 2",
            "gplv 2",
            "gnu general public license v 2",
        ],
        ..COPYLEFT
    },
    Entry {
        id: "GPL-3.0-only",
        name: "GNU General Public License v3.0",
        hf: Some("gpl-3.0"),
        aliases: &[
            "gpl 3 0",
            "gpl 3",
            "gplv 3",
            "gnu general public license v 3",
        ],
        ..COPYLEFT
    },
    Entry {
        id: "LGPL-2.1-only",
        name: "GNU Lesser General Public License v2.1",
        hf: Some("lgpl-2.1"),
        aliases: &["lgpl 2 1", "lgplv 2 1"],
        ..COPYLEFT
    },
    Entry {
        id: "LGPL-3.0-only",
        name: "GNU Lesser General Public License v3.0",
        hf: Some("lgpl-3.0"),
        aliases: &["lgpl 3 0", "lgplv 3", "lgpl 3"],
        ..COPYLEFT
    },
    Entry {
        id: "AGPL-3.0-only",
        name: "GNU Affero General Public License v3.0",
        hf: Some("agpl-3.0"),
        aliases: &["agpl 3 0", "agplv 3", "agpl 3"],
        ..COPYLEFT
    },
    Entry {
        id: "MPL-2.0",
        name: "Mozilla Public License 2.0",
        hf: Some("mpl-2.0"),
        aliases: &["mozilla public license 2 0"],
        ..COPYLEFT
    },
    Entry {
        id: "llama1",
        name: "LLaMA License Agreement (LLaMA 1 weights: non-commercial research only)",
        spdx: false,
        link: Some("https://github.com/facebookresearch/llama/blob/llama_v1/MODEL_CARD.md"),
        commercial: Commercial::NotAllowed,
        non_commercial: true,
        attribution: None,
        aliases: &["llama 1", "llama license agreement", "llama 1 license"],
        ..PERMISSIVE
    },
    Entry {
        id: "llama2",
        name: "Llama 2 Community License Agreement",
        spdx: false,
        hf: Some("llama2"),
        link: Some("https://ai.meta.com/llama/license/"),
        commercial: Commercial::Conditional,
        attribution: Some(
            "attribution: give a copy of the agreement with copies and keep the notice \"Llama 2 is licensed under the LLAMA 2 Community License, Copyright (c) Meta Platforms, Inc. All Rights Reserved.\"",
        ),
        users: Some(700_000_000),
        use_restrictions: LLAMA_AUP,
        outputs: Some(
            "do not use Llama 2 or its outputs to improve any other large language model (Llama 2 and its derivatives excepted)",
        ),
        aliases: &[
            "llama 2",
            "llama 2 community license",
            "llama 2 community license agreement",
        ],
        ..PERMISSIVE
    },
    Entry {
        id: "llama3",
        name: "Meta Llama 3 Community License Agreement",
        spdx: false,
        hf: Some("llama3"),
        link: Some("https://llama.meta.com/llama3/license"),
        commercial: Commercial::Conditional,
        attribution: Some(
            "attribution: give a copy of the agreement with copies and keep the notice \"Meta Llama 3 is licensed under the Meta Llama 3 Community License, Copyright © Meta Platforms, Inc. All Rights Reserved.\"",
        ),
        users: Some(700_000_000),
        naming: Some(
            "naming: display \"Built with Meta Llama 3\" prominently, and a model made from it must have a name that begins with \"Llama 3\"",
        ),
        use_restrictions: LLAMA_AUP,
        outputs: Some(
            "do not use Llama 3 or its outputs to improve any other large language model (Llama 3 and its derivatives excepted)",
        ),
        aliases: &[
            "llama 3",
            "meta llama 3 community license",
            "meta llama 3 community license agreement",
            "llama 3 community license",
        ],
        ..PERMISSIVE
    },
    Entry {
        id: "llama3.1",
        name: "Llama 3.1 Community License Agreement",
        spdx: false,
        hf: Some("llama3.1"),
        link: Some("https://www.llama.com/llama3_1/license/"),
        commercial: Commercial::Conditional,
        attribution: Some(
            "attribution: give a copy of the agreement with copies and keep the notice \"Llama 3.1 is licensed under the Llama 3.1 Community License, Copyright © Meta Platforms, Inc. All Rights Reserved.\"",
        ),
        users: Some(700_000_000),
        naming: LLAMA31_NAMING,
        use_restrictions: LLAMA_AUP,
        aliases: &[
            "llama 3 1 community license",
            "llama 3 1 community license agreement",
        ],
        ..PERMISSIVE
    },
    Entry {
        id: "llama3.2",
        name: "Llama 3.2 Community License Agreement",
        spdx: false,
        hf: Some("llama3.2"),
        link: Some("https://www.llama.com/llama3_2/license/"),
        commercial: Commercial::Conditional,
        attribution: Some(
            "attribution: give a copy of the agreement with copies and keep the notice \"Llama 3.2 is licensed under the Llama 3.2 Community License, Copyright © Meta Platforms, Inc. All Rights Reserved.\"",
        ),
        users: Some(700_000_000),
        naming: LLAMA31_NAMING,
        use_restrictions: LLAMA_AUP,
        other: &[
            "the Acceptable Use Policy grants no rights to the multimodal Llama 3.2 models to individuals or companies in the European Union",
        ],
        aliases: &[
            "llama 3 2 community license",
            "llama 3 2 community license agreement",
        ],
        ..PERMISSIVE
    },
    Entry {
        id: "llama3.3",
        name: "Llama 3.3 Community License Agreement",
        spdx: false,
        hf: Some("llama3.3"),
        link: Some("https://www.llama.com/llama3_3/license/"),
        commercial: Commercial::Conditional,
        attribution: Some(
            "attribution: give a copy of the agreement with copies and keep the notice \"Llama 3.3 is licensed under the Llama 3.3 Community License, Copyright © Meta Platforms, Inc. All Rights Reserved.\"",
        ),
        users: Some(700_000_000),
        naming: LLAMA31_NAMING,
        use_restrictions: LLAMA_AUP,
        aliases: &[
            "llama 3 3 community license",
            "llama 3 3 community license agreement",
        ],
        ..PERMISSIVE
    },
    Entry {
        id: "gemma",
        name: "Gemma Terms of Use",
        spdx: false,
        hf: Some("gemma"),
        link: Some("https://ai.google.dev/gemma/terms"),
        commercial: Commercial::Conditional,
        attribution: Some(
            "attribution: ship a Notice file saying \"Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\" and mark modified files",
        ),
        use_restrictions: Some(
            "use restrictions: the Gemma Prohibited Use Policy applies, and must be passed on as an enforceable provision in any agreement for Gemma or a model derived from it",
        ),
        other: &["Google may restrict (remotely or otherwise) use it believes breaks the terms"],
        aliases: &["gemma terms of use", "gemma license", "gemma terms"],
        ..PERMISSIVE
    },
    Entry {
        id: "qwen",
        name: "Qwen License Agreement",
        spdx: false,
        link: Some("https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE"),
        commercial: Commercial::Conditional,
        attribution: Some(
            "attribution: give a copy of the agreement with copies and keep the notice \"Qwen is licensed under the Qwen LICENSE AGREEMENT, Copyright (c) Alibaba Cloud. All Rights Reserved.\"",
        ),
        users: Some(100_000_000),
        naming: Some(
            "naming: a model built with Qwen or its outputs and made available must display \"Built with Qwen\" or \"Improved using Qwen\" in its documentation",
        ),
        aliases: &["qwen", "qwen license", "qwen license agreement"],
        ..PERMISSIVE
    },
    Entry {
        id: "qwen-research",
        name: "Qwen Research License Agreement (non-commercial)",
        spdx: false,
        link: Some("https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE"),
        commercial: Commercial::NotAllowed,
        non_commercial: true,
        attribution: None,
        aliases: &[
            "qwen research",
            "qwen research license",
            "qwen research license agreement",
        ],
        ..PERMISSIVE
    },
    Entry {
        id: "tongyi-qianwen",
        name: "Tongyi Qianwen License Agreement",
        spdx: false,
        link: Some(
            "https://github.com/QwenLM/Qwen/blob/main/Tongyi%20Qianwen%20LICENSE%20AGREEMENT",
        ),
        commercial: Commercial::Conditional,
        attribution: Some(
            "attribution: give a copy of the agreement with copies and keep its notice",
        ),
        users: Some(100_000_000),
        outputs: Some(
            "do not use it or its outputs to improve any other large language model (Tongyi Qianwen and its derivatives excepted)",
        ),
        aliases: &[
            "tongyi qianwen",
            "tongyi qianwen license",
            "tongyi qianwen license agreement",
        ],
        ..PERMISSIVE
    },
    Entry {
        id: "deepseek",
        name: "DeepSeek License Agreement v1.0",
        link: Some("https://github.com/deepseek-ai/DeepSeek-LLM/blob/main/LICENSE-MODEL"),
        aliases: &["deepseek license", "deepseek license agreement"],
        ..RAIL
    },
    Entry {
        id: "openrail",
        name: "Open RAIL (Responsible AI License)",
        hf: Some("openrail"),
        aliases: &["open rail", "openrail m", "open rail m"],
        ..RAIL
    },
    Entry {
        id: "bigscience-openrail-m",
        name: "BigScience Open RAIL-M",
        hf: Some("bigscience-openrail-m"),
        aliases: &["bigscience open rail m", "bigscience open rail m license"],
        ..RAIL
    },
    Entry {
        id: "bigscience-bloom-rail-1.0",
        name: "BigScience RAIL License v1.0 (BLOOM)",
        hf: Some("bigscience-bloom-rail-1.0"),
        aliases: &["bigscience rail 1 0", "bigscience rail license v 1 0"],
        ..RAIL
    },
    Entry {
        id: "creativeml-openrail-m",
        name: "CreativeML Open RAIL-M",
        hf: Some("creativeml-openrail-m"),
        aliases: &["creativeml open rail m"],
        ..RAIL
    },
    Entry {
        id: "bigcode-openrail-m",
        name: "BigCode Open RAIL-M v1",
        hf: Some("bigcode-openrail-m"),
        aliases: &["bigcode open rail m", "bigcode open rail m v 1"],
        ..RAIL
    },
];

impl Entry {
    fn terms(&self) -> Terms {
        Terms {
            id: self.id.into(),
            name: self.name.into(),
            spdx: self.spdx,
            hf_id: self.hf.map(Into::into),
            link: self.link.map(Into::into),
            commercial: self.commercial,
            attribution: self.attribution.map(Into::into),
            share_alike: self.share_alike,
            no_derivatives: false,
            non_commercial: self.non_commercial,
            user_threshold: self.users,
            naming: self.naming.map(Into::into),
            use_restrictions: self.use_restrictions.map(Into::into),
            output_restrictions: self.outputs.map(Into::into),
            other: self.other.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A Creative Commons licence id `CC-BY[-NC][-ND|-SA][-V.V]` (case-insensitive; without a
/// version when the source gave none), with its elements.
fn creative_commons(id: &str) -> Option<Terms> {
    let upper = id.to_ascii_uppercase();
    let rest = upper.strip_prefix("CC-BY")?;
    let mut nc = false;
    let mut nd = false;
    let mut sa = false;
    let mut version = None;
    for part in rest.split('-').skip(1) {
        match part {
            "NC" if !nc && version.is_none() => nc = true,
            "ND" if !nd && !sa && version.is_none() => nd = true,
            "SA" if !nd && !sa && version.is_none() => sa = true,
            v if version.is_none() && ["1.0", "2.0", "2.5", "3.0", "4.0"].contains(&v) => {
                version = Some(v.to_string())
            }
            _ => return None,
        }
    }
    if !rest.is_empty() && !rest.starts_with('-') {
        return None;
    }
    let elems: String = [("-NC", nc), ("-ND", nd), ("-SA", sa)]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(s, _)| *s)
        .collect();
    let canonical = match &version {
        Some(v) => format!("CC-BY{elems}-{v}"),
        None => format!("CC-BY{elems}"),
    };
    let words: Vec<&str> = [
        ("NonCommercial", nc),
        ("NoDerivatives", nd),
        ("ShareAlike", sa),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(w, _)| *w)
    .collect();
    let mut name = String::from("Creative Commons Attribution");
    for w in &words {
        name.push('-');
        name.push_str(w);
    }
    match &version {
        Some(v) => name.push_str(&format!(" {v}")),
        None => name.push_str(" (version not stated)"),
    }
    let commercial = if nc {
        Commercial::NotAllowed
    } else if nd || sa {
        Commercial::Conditional
    } else {
        Commercial::Allowed
    };
    let link = version.as_ref().map(|v| {
        format!(
            "https://creativecommons.org/licenses/{}/{v}/",
            canonical
                .trim_start_matches("CC-")
                .trim_end_matches(&format!("-{v}"))
                .to_lowercase()
        )
    });
    Some(Terms {
        spdx: version.is_some(),
        hf_id: version.as_ref().map(|_| canonical.to_lowercase()),
        id: canonical,
        name,
        link,
        commercial,
        attribution: Some(
            "attribution: credit the creator, link the licence and say whether you changed the material"
                .into(),
        ),
        share_alike: sa,
        no_derivatives: nd,
        non_commercial: nc,
        user_threshold: None,
        naming: None,
        use_restrictions: None,
        output_restrictions: None,
        other: Vec::new(),
    })
}

/// The terms of a catalogue id (case-insensitive), or of a Hugging Face hub id.
pub fn lookup(id: &str) -> Option<Terms> {
    let id = id.trim();
    ENTRIES
        .iter()
        .find(|e| e.id.eq_ignore_ascii_case(id) || e.hf.is_some_and(|h| h.eq_ignore_ascii_case(id)))
        .map(Entry::terms)
        .or_else(|| creative_commons(id))
}

/// Every catalogue id with the ways it may be written (token phrases), for mention scanning.
pub(crate) fn aliases() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for e in ENTRIES {
        let mut forms: Vec<String> = vec![crate::text::phrase_tokens(e.id).join(" ")];
        if let Some(h) = e.hf {
            forms.push(crate::text::phrase_tokens(h).join(" "));
        }
        forms.extend(e.aliases.iter().map(|a| a.to_string()));
        for f in forms {
            out.push((f, e.id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creative_commons_ids_carry_their_elements() {
        let t = lookup("cc-by-nc-sa-4.0").unwrap();
        assert_eq!(t.id, "CC-BY-NC-SA-4.0");
        assert_eq!(t.commercial, Commercial::NotAllowed);
        assert!(t.share_alike && t.non_commercial);
        assert_eq!(
            t.link.as_deref(),
            Some("https://creativecommons.org/licenses/by-nc-sa/4.0/")
        );
        assert_eq!(lookup("CC-BY-4.0").unwrap().commercial, Commercial::Allowed);
        assert_eq!(
            lookup("CC-BY-SA-3.0").unwrap().commercial,
            Commercial::Conditional
        );
        assert_eq!(
            lookup("CC-BY-NC").unwrap().name,
            "Creative Commons Attribution-NonCommercial (version not stated)"
        );
        assert!(lookup("CC-BY-SA-ND-4.0").is_none());
        assert!(lookup("CC-BYX").is_none());
    }

    #[test]
    fn hub_ids_find_their_licence() {
        assert_eq!(lookup("apache-2.0").unwrap().id, "Apache-2.0");
        assert_eq!(
            lookup("llama3.1").unwrap().user_threshold,
            Some(700_000_000)
        );
        assert!(lookup("other").is_none());
    }
}
