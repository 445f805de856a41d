//! The rule table: every free-text scrubbing rule, declared as data.
//!
//! A rule is `{ id, kind, method, pattern, check }`:
//! - `pattern` is a `regex` crate pattern (linear time, no backtracking). If it has capture groups
//!   whose names start with `s` (`s`, `s1`, `s2`, ...), the first one that participates is the
//!   span that gets replaced (so `password=` stays and only the value goes); otherwise the whole
//!   match is replaced.
//! - `check` is an optional validator that sees the whole text, the captures and the span; it may
//!   reject the candidate (Luhn, mod-97, word boundaries, placeholders...), narrow it, or refine the
//!   rule id/kind (the key=value rule names the kind after the key).
//! - Case-insensitive words are spelled `(?i-u:word)`: ASCII case folding. The crate links no
//!   Unicode case-folding tables (regex's `unicode-case` feature is off: 20 KB of the tail
//!   Worker's gzip budget), so a Unicode `(?i)` does not compile;
//!   `every_rule_compiles_and_has_cases` below fails on one.
//!
//! Order matters only for ties: when two candidates overlap, the longest wins; between candidates
//! of equal length the rule declared first (the more specific one) wins. Each rule has positive
//! and negative tests at the bottom of this file.

use super::prefilter as p;
use super::validate as v;
use super::{Method, RuleSpec};

/// The literals of `@vendor_token`'s prefixes (lower case; matched ASCII case-insensitively).
const VENDOR_KEYWORDS: &[&str] = &[
    "glpat-",
    "gldt-",
    "glft-",
    "glrt-",
    "glptt-",
    "glcbt-",
    "glimt-",
    "gloas-",
    "glsoat-",
    "glagent-",
    "glffct-",
    "glcd-",
    "glwt-",
    "gr1348941",
    "npm_",
    "pypi-",
    "hf_",
    "api_org_",
    "doo_v1_",
    "dop_v1_",
    "dor_v1_",
    "shpat_",
    "shpca_",
    "shppa_",
    "shpss_",
    "sq0atp-",
    "sq0csp-",
    "dapi",
    "atlasv1",
    "hvs.",
    "hvb.",
    "pul-",
    "pmak-",
    "lin_api_",
    "lin_oauth_",
    "pscale_",
    "sntr",
    "glc_",
    "glsa_",
    "atatt3",
    "nrak-",
    "nrii-",
    "nrjs-",
    "age-secret-key-1",
    "fo1_",
    "flyv1",
    "rubygems_",
    "sgp_",
    "pnu_",
    "sbp_",
    "dckr_pat_",
    "clojars_",
    "xkeysib-",
    "shippo_",
    "ezak",
    "eztk",
    "sha256~",
    "tfp_",
    "ghr_",
    "akcp",
    "cmvmd",
    "ya29.",
    "1//0",
    "rnd_",
    "vercel_",
    "a3-",
    "p8e-",
    "ltai",
    "absk",
    "s-s4t2",
    "ntn_",
    "sqa_",
    "sqp_",
    "squ_",
    "hrku-",
];

/// The literals of which a key that [`v::classify_key`] accepts contains at least one (its
/// normalisation drops `_ - .`, so a key spelled `p_a_s_s` would escape this gate; no corpus
/// has one), plus `key` for `<add key=… value=…>`.
const KV_KEYWORDS: &[&str] = &[
    "pass",
    "pw",
    "pin",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "sess",
    "sid",
    "jwt",
    "bearer",
    "csrf",
    "xsrf",
    "__secure-",
    "__host-",
];

/// Every rule, most specific first.
pub static RULES: &[RuleSpec] = &[
    // ---------------------------------------------------------------- keys and tokens
    RuleSpec {
        id: "@private_key",
        kind: "private_key",
        method: Method::Replace,
        // A PEM (or PGP) private key block, up to its END line, or up to the end of the text when
        // the block was cut (logs truncate long values).
        pattern: r"(?x)
            -----BEGIN[\ A-Z0-9_-]{0,40}PRIVATE\ KEY(?:\ BLOCK)?-----
            (?s:.*?)
            (?:-----END[\ A-Z0-9_-]{0,40}PRIVATE\ KEY(?:\ BLOCK)?-----|\z)",
        check: None,
        keywords: &["-----begin"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@jwt",
        kind: "jwt",
        method: Method::Replace,
        // header.payload[.signature]: both JSON objects, so both start with `ey` in base64url.
        // Code, not a regex (see `matchers`): the pattern it implements is `JWT_PATTERN`.
        pattern: "",
        check: None,
        keywords: &["eyj"],
        scan: None,
        find: Some(super::matchers::find_jwt),
    },
    RuleSpec {
        id: "@basic_auth",
        kind: "basic_auth",
        method: Method::Replace,
        // `Basic <base64(user:pass)>`; the check decodes it and wants a `:`.
        pattern: r"(?x)\b(?i-u:basic)\s+(?P<s>[A-Za-z0-9+/]{4,}={0,2})",
        check: Some(v::basic_credentials),
        keywords: &["basic"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@bearer",
        kind: "bearer",
        method: Method::Replace,
        // `Bearer <token>` anywhere (headers, curl lines, log lines). Code, not a regex (see
        // `matchers`): the pattern it implements is `BEARER_PATTERN`, its validator
        // `looks_random` (the regex form's `token_like`).
        pattern: "",
        check: None,
        keywords: &["bearer"],
        scan: None,
        find: Some(super::matchers::find_bearer),
    },
    RuleSpec {
        id: "@aws_access_key",
        kind: "aws_access_key",
        method: Method::Replace,
        pattern: r"(?x)\b(?P<s>(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16})\b",
        check: None,
        keywords: &[
            "a3t", "akia", "asia", "abia", "acca", "agpa", "aida", "aroa", "aipa", "anpa", "anva",
            "apka",
        ],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@aws_secret_key",
        kind: "aws_secret_key",
        method: Method::Replace,
        // 40 base64 characters after an aws…secret/access… key name.
        pattern: r#"(?x)
            (?i-u:aws)[A-Za-z0-9_.-]{0,24}?(?i-u:secret|access|private)[A-Za-z0-9_.-]{0,24}
            ["'\]]*\s*(?:=>|:=|[:=])\s*["'`]?
            (?P<s>[A-Za-z0-9/+=]{40})"#,
        check: Some(v::not_followed_by_base64),
        keywords: &["aws"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@github_token",
        kind: "github_token",
        method: Method::Replace,
        pattern: r"(?x)\b(?P<s>gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
        check: None,
        keywords: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@stripe_key",
        kind: "stripe_key",
        method: Method::Replace,
        // Secret and restricted keys (publishable `pk_` keys are public), and webhook secrets.
        pattern: r"(?x)\b(?P<s>(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{24,})",
        check: None,
        keywords: &["sk_", "rk_", "whsec_"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@slack_webhook",
        kind: "slack_webhook",
        method: Method::Replace,
        pattern: r"(?x)(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{8,}",
        check: None,
        keywords: &["hooks.slack.com"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@slack_token",
        kind: "slack_token",
        method: Method::Replace,
        // xoxb- (bot), xoxp- (user), xoxa-/xoxr-/xoxs-/xoxe- and config tokens `xoxe.xoxp-…`;
        // app-level tokens `xapp-`.
        pattern: r"(?x)\b(?P<s>xox[a-z](?:\.xox[a-z])?-[A-Za-z0-9-]{6,}|xapp-[0-9]-[A-Za-z0-9-]{10,})",
        check: None,
        keywords: &["xox", "xapp-"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@google_api_key",
        kind: "google_api_key",
        method: Method::Replace,
        pattern: r"(?x)\b(?P<s>AIza[0-9A-Za-z_-]{35})",
        check: None,
        keywords: &["aiza"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@anthropic_key",
        kind: "anthropic_key",
        method: Method::Replace,
        pattern: r"(?x)\b(?P<s>sk-ant-[A-Za-z0-9_-]{20,})",
        check: None,
        keywords: &["sk-ant-"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@openai_key",
        kind: "openai_key",
        method: Method::Replace,
        // sk-…, sk-proj-…, sk-svcacct-…, sk-admin-… (an `sk-ant-` key ties and loses to Anthropic).
        pattern: r"(?x)\b(?P<s>sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,})",
        check: Some(v::token_like),
        keywords: &["sk-"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@cloudflare_token",
        kind: "cloudflare_token",
        method: Method::Replace,
        // Origin CA keys anywhere; API tokens and global API keys after a cloudflare/cf key name.
        pattern: r#"(?x)
            \b(?P<s1>[vV]1\.0-[a-fA-F0-9]{24}-[a-fA-F0-9]{146})
          | (?:(?i-u:cloudflare)|\b(?i-u:cf))[A-Za-z0-9_.-]{0,24}?(?i-u:token|key|secret|auth)[A-Za-z0-9_.-]{0,16}
            ["'\]]*\s*(?:=>|:=|[:=])\s*["'`]?
            (?P<s2>[A-Za-z0-9_-]{32,64})"#,
        check: None,
        keywords: &["v1.0-", "cloudflare", "cf"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@vendor_token",
        kind: "api_key",
        method: Method::Replace,
        // Vendor tokens recognisable by their prefix alone (gitleaks' catalogue, abridged).
        pattern: r"(?x)
            (?:^|[^A-Za-z0-9_])
            (?P<s>
                glpat-[A-Za-z0-9_.-]{20,}                       # GitLab
              | gl(?:dt|ft|rt|ptt|cbt|imt|oas|soat|agent|ffct|cd|wt)-[A-Za-z0-9_.-]{16,}
              | GR1348941[A-Za-z0-9_-]{20,}                      # GitLab runner registration
              | npm_[A-Za-z0-9]{36}                              # npm
              | pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}           # PyPI
              | (?:hf|api_org)_[A-Za-z0-9]{30,}                  # Hugging Face
              | do[opr]_v1_[a-f0-9]{64}                          # DigitalOcean
              | shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}               # Shopify
              | sq0(?:atp|csp)-[A-Za-z0-9_\\^-]{22,}             # Square
              | dapi[a-f0-9]{32}(?:-[0-9])?                      # Databricks
              | [A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}    # Terraform Cloud
              | hv[sb]\.[A-Za-z0-9_-]{20,}                       # Vault
              | pul-[a-f0-9]{40}                                 # Pulumi
              | PMAK-[a-f0-9]{24}-[a-f0-9]{34}                   # Postman
              | lin_(?:api|oauth)_[A-Za-z0-9]{32,}               # Linear
              | pscale_(?:tkn|oauth|pw)_[A-Za-z0-9=._-]{32,}     # PlanetScale
              | sntr[ysu]s?_[A-Za-z0-9+/=_]{30,}                 # Sentry
              | gl(?:c|sa)_[A-Za-z0-9_+/=]{32,}                  # Grafana
              | ATATT3[A-Za-z0-9_=-]{100,}                       # Atlassian
              | NR(?:AK|II|JS)-[A-Za-z0-9]{19,}                  # New Relic
              | AGE-SECRET-KEY-1[A-Z0-9]{58}                     # age
              | fo1_[A-Za-z0-9_-]{43}                            # Fly.io
              | FlyV1\ fm[12][ar]?_[A-Za-z0-9+/=,_-]{100,}
              | rubygems_[a-f0-9]{48}                            # RubyGems
              | sgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}  # Sourcegraph
              | pnu_[A-Za-z0-9]{36}                              # Prefect
              | sbp_[a-f0-9]{40}                                 # Supabase
              | dckr_pat_[A-Za-z0-9_-]{27}                       # Docker Hub
              | CLOJARS_[a-z0-9]{60}                             # Clojars
              | xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}             # Sendinblue
              | shippo_(?:live|test)_[a-f0-9]{40}                # Shippo
              | EZ[AT]K[A-Za-z0-9]{54}                           # EasyPost
              | (?:dop|doo|dor)_v1_[a-f0-9]{64}
              | sha256~[A-Za-z0-9_-]{43}                         # OpenShift
              | tfp_[A-Za-z0-9_-]{40,}                           # Typeform
              | ghr_[A-Za-z0-9]{36}
              | AKCp[A-Za-z0-9]{69}|cmVmd[A-Za-z0-9]{59}         # JFrog / Artifactory
              | ya29\.[A-Za-z0-9_-]{30,}                         # Google OAuth access token
              | 1//0[A-Za-z0-9_-]{30,}                           # Google OAuth refresh token
              | hf_oauth_[A-Za-z0-9]{30,}
              | glsa_[A-Za-z0-9]{32}_[a-f0-9]{8}
              | rnd_[A-Za-z0-9]{32,}                             # Render
              | vercel_[A-Za-z0-9_-]{24,}
              | A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5} # 1Password
              | p8e-[A-Za-z0-9]{32}                              # Adobe
              | LTAI[A-Za-z0-9]{20}                              # Alibaba
              | ABSK[A-Za-z0-9+/]{100,}=*                        # AWS Bedrock
              | s-s4t2(?:ud|af)-[a-f0-9]{64}                     # 42 intra
              | ntn_[0-9]{11}[A-Za-z0-9]{32,}                    # Notion
              | sq[apu]_[A-Za-z0-9]{40}                          # SonarQube
              | HRKU-[A-Za-z0-9_-]{40,}                          # Heroku
            )",
        check: None,
        keywords: VENDOR_KEYWORDS,
        scan: None,
        find: None,
    },
    // Prefixes of `@vendor_token` (same id and kind) split out because their literal is common
    // in ordinary text (`eyJ` starts every JWT; `msg.`, `key-`, `secret_`, `udp.` and hex ids
    // with `eaa` are everywhere): each small pattern is compiled only when its own keyword is
    // seen, so a first call that meets a JWT no longer compiles the big pattern above (issue 9:
    // 2.9 of a first call's 12 ms of rule compilation on the replay corpus).
    RuleSpec {
        id: "@vendor_token",
        kind: "api_key",
        method: Method::Replace,
        pattern: r"(?x)
            (?:^|[^A-Za-z0-9_])
            (?P<s>
                ops_eyJ[A-Za-z0-9+/=]{100,}                      # 1Password service account
              | pk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}    # Mapbox
              | sk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}
            )",
        check: None,
        keywords: &["ops_eyj", "pk.eyj", "sk.eyj"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@vendor_token",
        kind: "api_key",
        method: Method::Replace,
        pattern: r"(?x)
            (?:^|[^A-Za-z0-9_])
            (?P<s>
                SG\.[A-Za-z0-9_-]{20,24}\.[A-Za-z0-9_-]{39,50}   # SendGrid
              | EAAA[A-Za-z0-9_+=-]{60}
              | dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,} # Doppler
              | key-[a-f0-9]{32}                                 # Mailgun
              | mfa\.[A-Za-z0-9_-]{84}                           # Discord
              | EAA[A-Z][A-Za-z0-9]{60,}                         # Facebook access token
              | secret_[A-Za-z0-9]{43}                           # Notion (legacy)
            )",
        check: None,
        keywords: &["sg.", "eaa", "dp.", "key-", "mfa.", "secret_"],
        scan: None,
        find: None,
    },
    // The vendor tokens whose only literal is short or common (`AC`, `pat`, `re_`, `|`): split
    // out of `@vendor_token` (same id and kind) so that the big pattern runs only on its rarer
    // keywords.
    RuleSpec {
        id: "@vendor_token",
        kind: "api_key",
        method: Method::Replace,
        pattern: r"(?x)
            (?:^|[^A-Za-z0-9_])
            (?P<s>
                (?:AC|SK)[a-f0-9]{32}                            # Twilio
              | pat[A-Za-z0-9]{14}\.[a-f0-9]{64}                 # Airtable
              | re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24,}               # Resend
              | [A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}   # Azure AD client secret
              | [0-9]{15,16}(?:\||%7[Cc])[0-9A-Za-z_-]{27}       # Facebook app token
            )",
        check: None,
        keywords: &["pat", "re_", "q~", "|", "%7c"],
        scan: Some(p::ScanKind::TwilioHex),
        find: None,
    },
    RuleSpec {
        id: "@vendor_context",
        kind: "api_key",
        method: Method::Replace,
        // Vendor tokens without a prefix of their own, recognised by a keyword before them
        // (gitleaks' `sumologic-access-id/-token`, `sourcegraph-access-token`,
        // `jfrog-api-key/-identity-token`, and detect-secrets' telegram and mailchimp plugins).
        pattern: r#"(?x)
            (?:[Ss]umo|SUMO)[A-Za-z0-9_.-]{0,24}["'\]]*\s*(?:=>|:=|[:=])\s*["'`]?
            (?P<s1>su[A-Za-z0-9]{12}|[A-Za-z0-9]{64})\b
          | (?i-u:sourcegraph)[A-Za-z0-9_.-]{0,24}["'\]]*\s*(?:=>|:=|[:=])\s*["'`]?
            (?P<s2>[a-fA-F0-9]{40})\b
          | (?i-u:jfrog|artifactory|bintray|xray)[A-Za-z0-9_.-]{0,24}["'\]]*\s*(?:=>|:=|[:=,])\s*["'`]?
            (?P<s3>[a-zA-Z0-9]{73}|[a-z0-9]{64})\b
          | \b(?P<s4>[0-9]{8,10}:AA[0-9A-Za-z_-]{33})(?:[^0-9A-Za-z_-]|$)          # Telegram bot token
          | \b(?P<s5>[0-9a-f]{32}-us[0-9]{1,2})\b                                # Mailchimp
        "#,
        check: None,
        keywords: &[
            "sumo",
            "sourcegraph",
            "jfrog",
            "artifactory",
            "bintray",
            "xray",
            ":aa",
            "-us",
        ],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@gcp_service_account",
        kind: "service_account",
        method: Method::Replace,
        // The marker line of a GCP service-account key file (gitleaks' `gcp-service-account`);
        // its `private_key` goes by `@private_key`.
        pattern: r#"(?x)"type"\s*:\s*"(?P<s>service_account)""#,
        check: None,
        keywords: &["service_account"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@webhook_url",
        kind: "webhook_url",
        method: Method::Replace,
        pattern: r"(?x)
            https://[A-Za-z0-9.-]*\.webhook\.office\.com/webhookb2/[A-Za-z0-9@/_-]{20,}
          | https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]+/[A-Za-z0-9_-]{20,}",
        check: None,
        keywords: &["webhook.office.com", "discord"],
        scan: None,
        find: None,
    },
    // ---------------------------------------------------------------- credentials in context
    RuleSpec {
        id: "@url_userinfo",
        kind: "url_userinfo",
        method: Method::Replace,
        // scheme://user:pass@host — everything between `://` and the last `@` of the authority.
        pattern: r#"(?x)\b[A-Za-z][A-Za-z0-9+.-]{1,20}://(?P<s>[^\s/?\#"'<>@]+(?:@[^\s/?\#"'<>@]+)*)@[A-Za-z0-9\[]"#,
        check: Some(v::userinfo_not_placeholder),
        keywords: &[],
        scan: Some(p::ScanKind::UrlUserinfo),
        find: None,
    },
    RuleSpec {
        id: "@curl_user",
        kind: "basic_auth",
        method: Method::Replace,
        // curl -u user:pass / --user 'user:pass'
        pattern: r#"(?x)(?:^|\s)(?:-u|--user)\s+(?P<s>(?:"[^"\r\n]*"|'[^'\r\n]*'|[^\s"']+)+)"#,
        check: Some(v::curl_credentials),
        keywords: &["-u"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@cookie_header",
        kind: "session_cookie",
        method: Method::Replace,
        // A Cookie / Set-Cookie header line: the whole value goes.
        pattern: r"(?x)\b(?i-u:(?:set-)?cookie)\s*:\s*(?P<s>[^\s\r\n][^\r\n]*)",
        check: Some(v::not_placeholder),
        keywords: &["cookie"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@secret_kv",
        kind: "secret",
        method: Method::Replace,
        // (Unbounded repetitions, lengths checked in code: a counted repetition of a Unicode
        // negated class, `[^"\r\n]{1,512}`, compiles to hundreds of UTF-8 automata, milliseconds
        // of a fresh isolate's first call; the keys' `{1,64}` cost 0.7 ms of its compile, so key
        // lengths are checked in `secret_kv` too. Case-insensitive only where a word is spelled,
        // ASCII only (`(?i-u:…)`): Unicode `(?i)` over the whole pattern made every `[A-Za-z…]`
        // class also match the Kelvin sign and the long s, multi-byte classes that cost another
        // 0.2 ms.)
        // `<key> <op> <value>` where the key names a secret (password, token, api_key, secret,
        // auth, cookie, session, ...); `classify_key` decides, and names the kind. Also the
        // reversed comparison `"<value>" == password`.
        pattern: r#"(?x)
            \b(?i-u:key)\s*=\s*"(?P<k3>[^"\r\n]+)"\s+(?i-u:value)\s*=\s*"(?P<s8>[^"\r\n]*)"    # <add key="Password" value="…"/>
          | (?P<k>[A-Za-z0-9_.-]*(?i-u:pass|pwd|pw|pin|secret|token|key|auth|credential|cookie|sess|sid|jwt|bearer|csrf|xsrf
                  |__secure-|__host-)[A-Za-z0-9_.-]*)
            (?:\[[0-9]*\])?
            (?:
                \\?["']?                                      # closing quote of a quoted key
                (?:\s*:?\s*(?i-u:string|str|&str|const|char|bytes|\[\]byte|text))?   # typed declarations
                \s*(?:=>|:=|===?|!==?|[.:?+|]{1,3}=|[:=])\s*@?
                (?:
                    "(?P<s1>(?:[^"\\\r\n]|\\[^\r\n])*)"           # to the closing quote, escapes included
                  | '(?P<s2>(?:[^'\\\r\n]|\\[^\r\n])*)'
                  | `(?P<s3>[^`\r\n]*)`
                  | \\"(?P<s4>[^"\\\r\n]*)                       # escaped JSON: \"value\"
                  | ["'`]?(?P<s5>(?:[^\s"'`,;&\\]|\\[^"'\s])+)   # bare value
                )
              | \s+"(?P<s6>[^"\r\n]+)"                          # password "value"
            )
          | "(?P<s7>[^"\r\n]+)"\s*(?:===?|!==?)\s*               # "value" == password
            (?P<k2>[A-Za-z0-9_.]*(?i-u:pass|pwd|secret|token|api_?key|private_?key|auth)[A-Za-z0-9_.]*)
          | ["'](?P<k4>[A-Za-z0-9_.-]+)["']\s*,\s*["'](?P<s9>[^"'\r\n]+)["']        # setProperty("TOKEN", "…")
          | <(?P<k5>[A-Za-z0-9_.-]+)>(?:\s|\\[nrtNRT])*(?P<s10>[^<\s\\]+)          # <token>…</token>
          | \((?P<k6>[A-Za-z0-9_.-]+)\)\s*=\s*\((?P<s11>[^)\r\n]+)\)(?:[\s.,;]|$)   # Postgres: Key (token)=(…)
          | (?:^|\s)--(?P<k7>[A-Za-z0-9_.-]+)\s+(?P<s12>[^\s"'`-][^\s"'`]*)     # --api-key VALUE
            "#,
        check: Some(v::secret_kv),
        keywords: KV_KEYWORDS,
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@bundler_credential",
        kind: "credential",
        method: Method::Replace,
        // Bundler host credentials: BUNDLE_GEMS__EXAMPLE__COM=user:pass
        pattern: r#"(?x)\bBUNDLE_[A-Z0-9_]*__[A-Z0-9_]+["']?\s*[:=]\s*["']?(?P<s>[^\s"']+)"#,
        check: Some(v::has_colon),
        keywords: &["bundle_"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@base64_credentials",
        kind: "basic_auth",
        method: Method::Replace,
        // Padded base64 that decodes to `user:password` (Kubernetes `data:` values, env files).
        pattern: r"(?x)(?:^|[^A-Za-z0-9+/])(?P<s>[A-Za-z0-9+/]{8,}={1,2})",
        check: Some(v::base64_credentials),
        keywords: &[],
        scan: Some(p::ScanKind::PaddedBase64),
        find: None,
    },
    RuleSpec {
        id: "@base64_blob",
        kind: "encoded_secret",
        method: Method::Replace,
        // Base64 of a JSON object (docker config, service-account files) or of a PEM block.
        pattern: r"(?x)\b(?P<s>eyJ[A-Za-z0-9+/]{40,}={0,2}|LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2})",
        check: None,
        keywords: &["eyj", "ls0tls1crudjti"],
        scan: None,
        find: None,
    },
    // ---------------------------------------------------------------- PII
    RuleSpec {
        id: "@home_user",
        kind: "user",
        method: Method::Replace,
        // The user name in a home-directory path: `C:\Users\<name>`, `/home/<name>`,
        // `/Users/<name>` (also JSON-escaped `C:\\Users\\`), as Relay's `@userpath`; the check
        // keeps role accounts (`runner`, `Public`) and URL paths (`/api/Users/5`).
        pattern: r#"(?x)
            [A-Za-z]:(?:\\\\|\\|/)(?:Users|Documents\ and\ Settings)(?:\\\\|\\|/)
            (?:
                (?P<s1>[^\\/"'`:*?<>|\r\n,;()\[\]{}]+?)(?:\\|/)    # Windows names may hold spaces
              | (?P<s2>[^\\/\s"'`:*?<>|,;()\[\]{}]+)
            )
          | (?:/home/|/Users/)(?P<s3>[^\\/\s"'`:*?<>|,;()\[\]{}]+)"#,
        check: Some(v::home_user),
        keywords: &["\\users", "/users", "/home/", "documents and settings"],
        scan: None,
        find: None,
    },
    RuleSpec {
        id: "@ssn",
        kind: "ssn",
        method: Method::Replace,
        // US social security numbers `123-45-6789` / `123 45 6789` with the SSA's validity rules
        // (area not 000, 666 or 900+, group not 00, serial not 0000), as presidio's recognizer.
        pattern: r"(?x)\b(?P<s>[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3}\ [0-9]{2}\ [0-9]{4})\b",
        check: Some(v::ssn),
        keywords: &[],
        scan: Some(p::ScanKind::SsnDigits),
        find: None,
    },
    RuleSpec {
        id: "@uk_nhs",
        kind: "nhs_number",
        method: Method::Replace,
        // UK NHS numbers in their printed grouping 3-3-4 (mod-11 check digit in code).
        pattern: r"(?x)\b(?P<s>[0-9]{3}-[0-9]{3}-[0-9]{4}|[0-9]{3}\ [0-9]{3}\ [0-9]{4})\b",
        check: Some(v::uk_nhs),
        keywords: &[],
        scan: Some(p::ScanKind::SsnDigits),
        find: None,
    },
    RuleSpec {
        id: "@email",
        kind: "email",
        method: Method::Replace,
        // local@domain.tld (also percent-encoded `%40`, and IDN `xn--` labels). Code, not a
        // regex (see `matchers`): the pattern it implements is `EMAIL_PATTERN`, its validator
        // `email_ok` (the regex form's `email`).
        pattern: "",
        check: None,
        keywords: &["@", "%40"],
        scan: None,
        find: Some(super::matchers::find_email),
    },
    RuleSpec {
        id: "@credit_card",
        kind: "credit_card",
        method: Method::Mask(v::card_brand),
        // 13–19 digits, plain or in groups of 4 (Amex 4-6-5); Luhn, issuer prefix and boundaries
        // are checked in code.
        pattern: r"(?x)
            \b(?P<s>
                [0-9]{4}(?:[\ -][0-9]{4}){3}(?:[\ -]?[0-9]{1,3})?
              | [0-9]{4}(?:[\ -][0-9]{4}){2}[\ -][0-9]{1,3}       # 13-15 digits as 4-4-4-n
              | [0-9]{4}[\ -][0-9]{6}[\ -][0-9]{4,5}
              | [0-9]{13,19}
            )\b",
        check: Some(v::credit_card),
        keywords: &[],
        scan: Some(p::ScanKind::CardDigits),
        find: None,
    },
    RuleSpec {
        id: "@iban",
        kind: "iban",
        method: Method::Mask(v::iban_country),
        pattern: r"(?x)\b(?P<s>[A-Z]{2}[0-9]{2}(?:\ ?[A-Z0-9]{4}){2,7}(?:\ ?[A-Z0-9]{1,3})?)\b",
        check: Some(v::iban),
        keywords: &[],
        scan: Some(p::ScanKind::IbanStart),
        find: None,
    },
    RuleSpec {
        id: "@ipv6",
        kind: "ip",
        method: Method::Replace,
        // Candidates: 8 groups, 6 groups + IPv4, or a compressed form with `::` (optional IPv4
        // tail); then zone and prefix length. `std::net::Ipv6Addr` decides, and the check enforces
        // word boundaries (`std::cout`, `fe80::1text`). `file.js:12:34` never gets this far.
        pattern: r"(?x)
            (?:
                (?:[0-9A-Fa-f]{1,4}:){6}(?:[0-9]{1,3}\.){3}[0-9]{1,3}
              | (?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}
              | (?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?
                ::
                (?:(?:[0-9A-Fa-f]{1,4}:){0,5}(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?
            )
            (?:%[0-9A-Za-z._-]+)?
            (?:/[0-9]{1,4})?",
        check: Some(v::ipv6),
        keywords: &[],
        scan: Some(p::ScanKind::Ipv6Like),
        find: None,
    },
    RuleSpec {
        id: "@ipv4",
        kind: "ip",
        method: Method::Replace,
        pattern: r"(?x)
            (?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])
            (?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}
            (?:/[0-9]{1,3})?",
        check: Some(v::ipv4),
        keywords: &[],
        scan: Some(p::ScanKind::DottedQuad),
        find: None,
    },
    RuleSpec {
        id: "@mac",
        kind: "mac",
        method: Method::Replace,
        pattern: r"(?x)
            [0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}
          | [0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}
          | [0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}",
        check: Some(v::mac),
        keywords: &[],
        scan: Some(p::ScanKind::MacLike),
        find: None,
    },
    RuleSpec {
        id: "@phone",
        kind: "phone",
        method: Method::Replace,
        // International (+CC ...), North American (415) 555-0132 / 415-555-0132, and national
        // numbers with a trunk 0 (090-1234-5678, 0917 123 4567, 09171234567). Bare digit runs
        // without a leading 0 or + are left alone: they are ids and timestamps far more often.
        pattern: r"(?x)
            \+[1-9][0-9]{0,3}(?:[\ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,7}
          | \([2-9][0-9]{2}\)[\ .-]?[0-9]{3}[\ .-][0-9]{4}
          | [2-9][0-9]{2}[.-][0-9]{3}[.-][0-9]{4}
          | (?:0|\(0[0-9]{1,4}\)|0[0-9]{1,4})(?:[\ -]\(?[0-9]{2,4}\)?){2,4}
          | 0[0-9]{1,2}-[0-9]{7,8}
          | 0[1-9][0-9]{8,9}",
        check: Some(v::phone),
        keywords: &[],
        scan: Some(p::ScanKind::PhoneDigits),
        find: None,
    },
    // ---------------------------------------------------------------- secrets by content
    RuleSpec {
        id: "@high_entropy",
        kind: "secret",
        method: Method::Replace,
        // No pattern: tokens judged by their entropy and shape (detect-secrets' high-entropy
        // plugins, with our guards), see `entropy::is_secret_token`. Last, so that every
        // shape rule wins a tie.
        pattern: "",
        check: None,
        keywords: &[],
        scan: Some(p::ScanKind::TokenRun20),
        find: Some(super::entropy::find_tokens),
    },
];

#[cfg(test)]
mod tests {
    use super::super::{Remark, scrub_text};
    use super::RULES;

    /// (rule id, [(input, expected output)], [inputs that must stay unchanged])
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );

    const CASES: &[Case] = &[
        (
            "@private_key",
            &[
                (
                    "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY----- end",
                    "key: [redacted:private_key] end",
                ),
                (
                    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA",
                    "[redacted:private_key]",
                ),
                (
                    "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQWGBGSVV4\n-----END PGP PRIVATE KEY BLOCK-----",
                    "[redacted:private_key]",
                ),
            ],
            &[
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                "private key missing",
            ],
        ),
        (
            "@jwt",
            &[
                (
                    "t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc_DEF-123 ok",
                    "t=[redacted:jwt] ok",
                ),
                ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0In0.", "[redacted:jwt]"),
            ],
            &["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "eyes.eyebrows"],
        ),
        (
            "@basic_auth",
            &[
                (
                    "Authorization: Basic dXNlcjpwYXNz",
                    "Authorization: Basic [redacted:basic_auth]",
                ),
                ("basic YnJvd3Nlcjo=", "basic [redacted:basic_auth]"),
            ],
            &[
                "basic authentication failed",
                "Basic dGVzdA== is not a credential",
            ],
        ),
        (
            "@bearer",
            &[
                (
                    "Authorization: Bearer abcDEF123456",
                    "Authorization: Bearer [redacted:bearer]",
                ),
                ("bearer 0123456789abcdef0123", "bearer [redacted:bearer]"),
            ],
            &["bearer authentication required", "Bearer token missing"],
        ),
        (
            "@aws_access_key",
            &[
                (
                    "id AKIALALEMEL33243OLIB used",
                    "id [redacted:aws_access_key] used",
                ),
                ("ASIASPGS4747XSVLULNF", "[redacted:aws_access_key]"),
            ],
            &[
                "AKIAZZZ",
                "akiazzzzzzzzzzzzzzzz",
                "TODAYINASIAASACKOFRICEFELLOVER",
            ],
        ),
        (
            "@aws_secret_key",
            &[(
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_access_key = [redacted:aws_secret_key]",
            )],
            &["aws region = us-east-1"],
        ),
        (
            "@github_token",
            &[
                (
                    "push with 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 failed",
                    "push with [redacted:github_token] failed",
                ),
                (
                    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
                    "[redacted:github_token]",
                ),
            ],
            &["gh_pages_branch", "ghp_short"],
        ),
        (
            "@stripe_key",
            &[
                ("sk_live_ReTllpYQYfIZu2Jnf2lAPFjD", "[redacted:stripe_key]"),
                (
                    "key rk_live_5TcWfjKmJgpql9hjpRnwRXbT.",
                    "key [redacted:stripe_key].",
                ),
            ],
            &["pk_live_j5krY8XTgIcDaHDb3YrsAfCl", "sk_live_"],
        ),
        (
            "@slack_webhook",
            &[(
                "post https://hooks.slack.com/services/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 failed",
                "post [redacted:slack_webhook] failed",
            )],
            &["https://hooks.slack.com/", "slack.com/services"],
        ),
        (
            "@slack_token",
            &[
                (
                    "xoxb-263594206564-FGqddMF8t08v8N7Oq4i57vs1",
                    "[redacted:slack_token]",
                ),
                (
                    "t=xoxp-523423-234243-234233-e039d02840a0b9379c",
                    "t=[redacted:slack_token]",
                ),
            ],
            &["xoxb-", "the xox format"],
        ),
        (
            "@google_api_key",
            &[(
                "key AIzaSyNHxIf32IQ1a1yjl3ZJIqKZqzLAK1XhDk- ok",
                "key [redacted:google_api_key] ok",
            )],
            &["AIza short", "AIzaTooShort123"],
        ),
        (
            "@anthropic_key",
            &[(
                "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
                "[redacted:anthropic_key]",
            )],
            &["sk-ant-", "task-ant-abcdefghijklmnopqrstuvwxyz0123"],
        ),
        (
            "@openai_key",
            &[
                (
                    "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",
                    "[redacted:openai_key]",
                ),
                (
                    "sk-proj-Xi8tdMjHV6pmbBbwilTeT3BlbkFJ3UDnpdEwNNm6",
                    "[redacted:openai_key]",
                ),
            ],
            &[
                "sk-learn-is-a-library-name-not-a-key",
                "task-management-service-config",
            ],
        ),
        (
            "@cloudflare_token",
            &[
                (
                    "CLOUDFLARE_API_TOKEN=rtd59cs870nyfpf4xfc50ab57poblyzwzkoqz2p-",
                    "CLOUDFLARE_API_TOKEN=[redacted:cloudflare_token]",
                ),
                (
                    "cf_api_key: 3443eca388b8aa8ec9d4d9fc4f6d66a00bf89",
                    "cf_api_key: [redacted:cloudflare_token]",
                ),
            ],
            &[
                "cloudflare zone = example.com",
                "cf-ray: 8a1b2c3d4e5f6a7b-AMS",
            ],
        ),
        (
            "@vendor_token",
            &[
                ("glpat-pczzvabdq64idsayzbi5ardmpy8", "[redacted:api_key]"),
                (
                    "npm token npm_abcdefghijklmnopqrstuvwxyz0123456789",
                    "npm token [redacted:api_key]",
                ),
                (
                    "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
                    "[redacted:api_key]",
                ),
            ],
            &["glpat-", "the npm_config_cache setting", "shp_not_a_token"],
        ),
        (
            "@vendor_context",
            &[
                (
                    "sumologic.accessId = \"su9OL59biWiJu7\"",
                    "sumologic.accessId = \"[redacted:api_key]\"",
                ),
                (
                    "sourcegraph: 6d2FabeB6ADd229Bc199FabA28fD3efb57dF0bD3",
                    "sourcegraph: [redacted:api_key]",
                ),
                (
                    "\"artifactory\", \"z2nusczcq50777dqe4qr4piaer6r064aoldzidn5p3fba3u3wd2s8u18hhjkdng6\"",
                    "\"artifactory\", \"[redacted:api_key]\"",
                ),
                (
                    "bot 110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw failed",
                    "bot [redacted:api_key] failed",
                ),
            ],
            &[
                "sumObj = suGyI5imvADdvU",
                "sumologic_access_id         = \"\"",
                "export SUMOLOGIC_ACCESSID=XXXXXXXXXXXXXX",
                "BcAeb6640ad7DAD46AD73687946Ce85047d5C9Bb",
                "xray tracing enabled: true",
            ],
        ),
        (
            "@gcp_service_account",
            &[(
                "{\"type\": \"service_account\", \"project_id\": \"p\"}",
                "{\"type\": \"[redacted:service_account]\", \"project_id\": \"p\"}",
            )],
            &["service_account missing", "\"type\": \"authorized_user\""],
        ),
        (
            "@webhook_url",
            &[(
                "https://discord.com/api/webhooks/123456/abcdefghijklmnopqrstuvwxyz",
                "[redacted:webhook_url]",
            )],
            &["https://discord.com/api/users/123"],
        ),
        (
            "@url_userinfo",
            &[
                (
                    "connect postgres://app:hunter2@db.internal:5432/app",
                    "connect postgres://[redacted:url_userinfo]@db.internal:5432/app",
                ),
                (
                    "https://cafebabe:deadbeef@gems.contribsys.com/",
                    "https://[redacted:url_userinfo]@gems.contribsys.com/",
                ),
            ],
            &[
                "https://url:8000 @something else",
                "https://example.com/a@b",
            ],
        ),
        (
            "@curl_user",
            &[
                (
                    "curl -u elastic:P@ssw0rd1 https://localhost",
                    "curl -u [redacted:basic_auth] https://localhost",
                ),
                (
                    "curl --user kevin:'pRf7vG2h1L8nQkW9' -X",
                    "curl --user [redacted:basic_auth] -X",
                ),
            ],
            &[
                "curl -u \"$USER:$PASS\" x",
                "curl -u <user:password> x",
                "sudo -u www-data ls",
            ],
        ),
        (
            "@cookie_header",
            &[
                (
                    "Cookie: session=abc123; theme=dark",
                    "Cookie: [redacted:session_cookie]",
                ),
                (
                    "set-cookie: sid=xyz; Path=/",
                    "set-cookie: [redacted:session_cookie]",
                ),
            ],
            &["cookie consent banner", "Cookie: REDACTED"],
        ),
        (
            "@secret_kv",
            &[
                ("password=hunter2", "password=[redacted:password]"),
                (
                    r#"{"password": "s3cr3t pass"}"#,
                    r#"{"password": "[redacted:password]"}"#,
                ),
                ("api_key = 'abc123def456'", "api_key = '[redacted:api_key]'"),
                (
                    "client_secret: Zm9vYmFy1",
                    "client_secret: [redacted:secret]",
                ),
                (
                    "GET /cb?token=abc123&x=1",
                    "GET /cb?token=[redacted:token]&x=1",
                ),
                (
                    "dbPassword := `p4ss`",
                    "dbPassword := `[redacted:password]`",
                ),
                (
                    "session=abc123def; path=/",
                    "session=[redacted:session_cookie]; path=/",
                ),
                (
                    "__Secure-next-auth.session-token=abc.def",
                    "__Secure-next-auth.session-token=[redacted:session_cookie]",
                ),
                ("sid=s%3Aabc123", "sid=[redacted:session_cookie]"),
                (
                    "Authorization: Token 22cb987851bc5659",
                    "Authorization: Token [redacted:auth]",
                ),
                (
                    r#"if ("m{{h}o)p${e]nob" == password) {"#,
                    r#"if ("[redacted:password]" == password) {"#,
                ),
                ("(password=abc)", "(password=[redacted:password])"),
                (
                    "const HEROKU_KEY = \"12345678-ABCD-ABCD-ABCD-1234567890AB\"",
                    "const HEROKU_KEY = \"[redacted:api_key]\"",
                ),
                (
                    "<add key=\"ClearTextPassword\" value=\"p4ss\" />",
                    "<add key=\"ClearTextPassword\" value=\"[redacted:password]\" />",
                ),
                (
                    "System.setProperty(\"TRELLO_TOKEN\", \"9jv7ZYHcqF5\")",
                    "System.setProperty(\"TRELLO_TOKEN\", \"[redacted:token]\")",
                ),
                (
                    "var trelloToken string = \"9jv7ZYHc\"",
                    "var trelloToken string = \"[redacted:token]\"",
                ),
                (
                    "$trelloToken .= \"9jv7ZYHc\"",
                    "$trelloToken .= \"[redacted:token]\"",
                ),
                (
                    "<apiToken>abc123</apiToken>",
                    "<apiToken>[redacted:token]</apiToken>",
                ),
                (
                    "Key (secret)=(wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY) already exists.",
                    "Key (secret)=([redacted:secret]) already exists.",
                ),
                (
                    "body password=tr0ub&dor&x&user=bob",
                    "body password=[redacted:password]&user=bob",
                ),
                (
                    r#"{"password":"p\"a&ss w","user":"bob"}"#,
                    r#"{"password":"[redacted:password]","user":"bob"}"#,
                ),
                (
                    "run --softlayer-api-key abcd1234abcd1234 now",
                    "run --softlayer-api-key [redacted:api_key] now",
                ),
                ("X-Shop-Key: abc123", "X-Shop-Key: [redacted:api_key]"),
                (
                    "cloudant_pw='abcd1234abcd1234'",
                    "cloudant_pw='[redacted:password]'",
                ),
            ],
            &[
                "password=",
                "password: null",
                "token: ${link}",
                "prompt_tokens=123",
                "authorName=alice",
                "bypass=true",
                "inside=yes",
                "password = ,.:-",
                "password=[redacted:password]",
                "KV get failed: key=user:42:profile",
                "cacheKey=uploads/avatar.png",
                "key: some-key-name",
            ],
        ),
        (
            "@bundler_credential",
            &[(
                "export BUNDLE_ENTERPRISE__CONTRIBSYS__COM=cafebabe:deadbeef",
                "export BUNDLE_ENTERPRISE__CONTRIBSYS__COM=[redacted:credential]",
            )],
            &["BUNDLE_GEMFILE=Gemfile", "BUNDLE_PATH__SYSTEM: true"],
        ),
        (
            "@base64_credentials",
            &[(
                "data:\n  extra: YWRtaW46cGFzc3dvcmQ=",
                "data:\n  extra: [redacted:basic_auth]",
            )],
            &["etag: dGVzdA==", "value bXlwYXNzd29yZA== here"],
        ),
        (
            "@base64_blob",
            &[(
                ".dockercfg: eyJhdXRocyI6eyJodHRwczovL2V4YW1wbGUvdjEvIjp7ImF1dGgiOiJvcGVuc2VzYW1lIn19fQo=",
                ".dockercfg: [redacted:encoded_secret]",
            )],
            &["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "LS0tLS1"],
        ),
        (
            "@home_user",
            &[
                (
                    "at /home/alice/app/src/index.js:3:7",
                    "at /home/[redacted:user]/app/src/index.js:3:7",
                ),
                (
                    "ENOENT: open 'C:\\Users\\Bob Smith\\AppData\\x.json'",
                    "ENOENT: open 'C:\\Users\\[redacted:user]\\AppData\\x.json'",
                ),
                (
                    "(/Users/jdoe/Projects/api/worker.js:10:2)",
                    "(/Users/[redacted:user]/Projects/api/worker.js:10:2)",
                ),
                (
                    r#"{"path":"C:\\Users\\carol\\x"}"#,
                    r#"{"path":"C:\\Users\\[redacted:user]\\x"}"#,
                ),
            ],
            &[
                "at /home/runner/work/app/index.js:1:1",
                "GET https://api.example.com/v1/Users/42 failed",
                "C:\\Users\\Public\\Documents",
                "/home/$USER/.config",
                "cd /srv/home/site",
            ],
        ),
        (
            "@ssn",
            &[
                ("ssn 078-05-1121 on file", "ssn [redacted:ssn] on file"),
                ("SSN: 536 22 1234.", "SSN: [redacted:ssn]."),
            ],
            &[
                "000-12-3456",
                "666-12-3456",
                "912-34-5678",
                "123-00-4567",
                "123-45-0000",
                "123-45-6789",
                "call 1-415-55-0132",
                "v1.234-56-7890",
            ],
        ),
        (
            "@uk_nhs",
            &[
                ("nhs 401-023-2137 ok", "nhs [redacted:nhs_number] ok"),
                ("943 476 5919", "[redacted:nhs_number]"),
            ],
            &["401-023-2138", "943 476 5918"],
        ),
        (
            "@email",
            &[
                (
                    "user bob.smith+tag@example.co.uk not found",
                    "user [redacted:email] not found",
                ),
                ("a@xn--d1acufc.xn--p1ai", "[redacted:email]"),
                ("/u/bob%40example.com/x", "/u/[redacted:email]/x"),
            ],
            &[
                "my email is info@presidio.",
                "lodash@4.17.21",
                "@scope/pkg",
                "hello-world here",
            ],
        ),
        (
            "@credit_card",
            &[
                (
                    "card 4111 1111 1111 1111 declined",
                    "card [redacted:credit_card:visa] declined",
                ),
                ("4012-8888-8888-1881", "[redacted:credit_card:visa]"),
                ("371449635398431", "[redacted:credit_card:amex]"),
                ("5555555555554444", "[redacted:credit_card:mastercard]"),
                ("122000000000003", "[redacted:credit_card:uatp]"),
            ],
            &[
                "4012-8888-8888-1882",
                "ts 1748503543012",
                "id 1234567890123456",
                "0000000000000000",
                "x=0.4111111111111111",
                "1700000000000000",
            ],
        ),
        (
            "@iban",
            &[
                ("iban DE89370400440532013000.", "iban [redacted:iban:de]."),
                ("GB82 WEST 1234 5698 7654 32", "[redacted:iban:gb]"),
            ],
            &["DE89370400440532013001", "AB12 CDEF GHIJ KLMN"],
        ),
        (
            "@ipv6",
            &[
                ("from 2001:db8::1 ok", "from [redacted:ip] ok"),
                (
                    "Connect to [2001:db8::1]:8080",
                    "Connect to [[redacted:ip]]:8080",
                ),
                ("fe80::1%eth0/64", "[redacted:ip]"),
                ("src=:: dst=::1", "src=[redacted:ip] dst=[redacted:ip]"),
                ("::ffff:192.0.2.1", "[redacted:ip]"),
            ],
            &[
                "std::cout",
                "MyClass::toString",
                ":::",
                "Time 12:34:56",
                "2001::db8::1",
                "fe80::1text",
                "core::fmt::Display",
                "684D:1111:222:3333:4444:5555:77",
            ],
        ),
        (
            "@ipv4",
            &[
                ("client 203.0.113.7 blocked", "client [redacted:ip] blocked"),
                ("192.168.1.0/24", "[redacted:ip]"),
                ("http://10.0.0.1:8080/x", "http://[redacted:ip]:8080/x"),
                ("IP: 192.168.1.1.", "IP: [redacted:ip]."),
            ],
            &[
                "Version 1.2.3",
                "256.256.256.256",
                "text192.168.1.1",
                "Chrome/120.0.0.0 Safari/537.36",
                "v1.2.3.4",
                "1.2.3.04",
            ],
        ),
        (
            "@mac",
            &[
                ("MAC: 00:1A:2B:3C:4D:5E", "MAC: [redacted:mac]"),
                ("Cisco MAC: 0012.3456.789A", "Cisco MAC: [redacted:mac]"),
            ],
            &[
                "FF:FF:FF:FF:FF:FF",
                "00:00:00:00:00:00",
                "Not a MAC: 00:1A:2B:3C:4D",
                "10:2F:33-AC-29-C3",
            ],
        ),
        (
            "@phone",
            &[
                ("call (415) 555-0132 now", "call [redacted:phone] now"),
                ("intl +1 415 555 0132.", "intl [redacted:phone]."),
                ("+44 (20) 7123 4567", "[redacted:phone]"),
                ("US: 415-555-0132", "US: [redacted:phone]"),
                ("JP 090-1234-5678", "JP [redacted:phone]"),
                ("mobile 09171234567", "mobile [redacted:phone]"),
                ("+33 1 42 68 53 00", "[redacted:phone]"),
            ],
            &[
                "port 8080",
                "ts=1700000000",
                "2024-01-15 10:30:00",
                "version 1.2.3",
                "id 1234567890",
                "1+2 = 3",
                "took 1234 ms",
                "01-02-2024",
                "x +12 y",
            ],
        ),
        (
            "@high_entropy",
            &[
                (
                    "D1_ERROR: near \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\": syntax error",
                    "D1_ERROR: near \"[redacted:secret]\": syntax error",
                ),
                (
                    "invalid api key pk_prod_4eC39HqLyjWDarjtT1zdp7dc",
                    "invalid api key [redacted:secret]",
                ),
                (
                    "unknown session sess_9fKd02LmQx7PzR4tVb81NcWe",
                    "unknown session [redacted:secret]",
                ),
                (
                    "foo_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx",
                    "[redacted:secret]",
                ),
            ],
            &[
                "at Object.handleRequestWithRetries (worker.js:12:34)",
                "request 123e4567-e89b-12d3-a456-426614174000 failed",
                "commit 8f953371d3e85eddb89b05ed6b9e680791055315",
                "customer cus_NffrFeUfNV2Hib9xKQ7 not found",
                "sort=created_at_desc&page_size=100",
                "Base64EncoderV2Instance is not a constructor",
            ],
        ),
    ];

    fn rule_ids(remarks: &[Remark]) -> Vec<&str> {
        remarks.iter().map(|r| r.rule.as_str()).collect()
    }

    #[test]
    fn every_rule_compiles_and_has_cases() {
        for rule in RULES {
            assert!(
                rule.find.is_some() || super::super::rule_regex_for(rule).is_some(),
                "{} does not compile",
                rule.id
            );
            assert!(
                CASES.iter().any(|(id, _, _)| *id == rule.id),
                "{} has no test cases",
                rule.id
            );
        }
    }

    #[test]
    fn positives() {
        for (id, pos, _) in CASES {
            for (input, want) in *pos {
                let out = scrub_text(input);
                assert_eq!(
                    out.text, *want,
                    "rule {id} on {input:?}: remarks {:?}",
                    out.remarks
                );
                assert!(!out.remarks.is_empty(), "rule {id} on {input:?}: no remark");
                // the expected rule fired (kv rules refine their id: @password_kv, @token_kv, ...)
                let fired = rule_ids(&out.remarks);
                let family_ok = fired.iter().any(|r| {
                    *r == *id
                        || (*id == "@secret_kv" && r.ends_with("_kv"))
                        || (*id == "@ipv6" && *r == "@ipv4")
                });
                assert!(family_ok, "rule {id} on {input:?}: fired {fired:?}");
                for r in &out.remarks {
                    let slice = out.text.get(r.start..r.end).unwrap_or("<bad range>");
                    assert!(
                        slice.is_empty() || slice.starts_with("[redacted:"),
                        "{id}: remark {r:?} -> {slice:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn negatives() {
        for (id, _, neg) in CASES {
            for input in *neg {
                let out = scrub_text(input);
                assert_eq!(
                    out.text, *input,
                    "rule {id}: {input:?} should be untouched, remarks {:?}",
                    out.remarks
                );
            }
        }
    }

    /// `@secret_kv`'s quoted, tagged, parenthesised and flag keys are at most 64 chars, checked in
    /// its validator since the pattern spells them `+`: both sides of the line, in each syntax.
    #[test]
    fn secret_kv_keys_up_to_64_chars() {
        let key = |n: usize| format!("{}_token", "a".repeat(n - "_token".len()));
        for (n, redacted) in [(64, true), (65, false)] {
            let k = key(n);
            for input in [
                format!("setProperty(\"{k}\", \"Zq8vR2mKx7Lw\")"),
                format!("<{k}>Zq8vR2mKx7Lw</{k}>"),
                format!("Key ({k})=(Zq8vR2mKx7Lw) already exists."),
                format!("run --{k} Zq8vR2mKx7Lw"),
            ] {
                let out = scrub_text(&input);
                assert_eq!(
                    !out.text.contains("Zq8vR2mKx7Lw"),
                    redacted,
                    "key of {n} chars: {input:?} -> {:?}",
                    out.text
                );
            }
        }
    }
}
