//! `--change` instructions for a rootfs import, as `docker import --change` takes them:
//! Dockerfile lines that set the image's runtime defaults. `CMD`, `ENTRYPOINT` (JSON
//! exec form `["a","b"]` or shell form, which runs under `/bin/sh -c`), `ENV` (`K=V ...`
//! or `K V`), `WORKDIR`, `USER` and `STOPSIGNAL` are applied; any other instruction is
//! an error naming it, never silently dropped.

use super::oci::ContainerConfig;

/// Runtime defaults gathered from `--change` lines, applied to a rootfs import's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageChanges {
    /// `ENTRYPOINT`.
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    pub cmd: Option<Vec<String>>,
    /// `ENV`, as `NAME=value`, a later value of a name replacing the earlier.
    pub env: Vec<String>,
    /// `WORKDIR`.
    pub working_dir: Option<String>,
    /// `USER`.
    pub user: Option<String>,
    /// `STOPSIGNAL`.
    pub stop_signal: Option<String>,
}

impl ImageChanges {
    /// Whether no change was given.
    pub fn is_empty(&self) -> bool {
        *self == ImageChanges::default()
    }

    /// Applies one `--change` line; the error says what is wrong with it.
    pub fn apply(&mut self, line: &str) -> Result<(), String> {
        let line = line.trim();
        let (word, rest) = line
            .split_once(char::is_whitespace)
            .map(|(w, r)| (w, r.trim()))
            .unwrap_or((line, ""));
        let instr = word.to_ascii_uppercase();
        if rest.is_empty() {
            return Err(format!("{line:?}: {instr} needs an argument"));
        }
        match instr.as_str() {
            "CMD" => self.cmd = Some(command(rest, &instr)?),
            "ENTRYPOINT" => self.entrypoint = Some(command(rest, &instr)?),
            "ENV" => {
                for (k, v) in env_pairs(rest)? {
                    self.env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    self.env.push(format!("{k}={v}"));
                }
            }
            "WORKDIR" => {
                if !rest.starts_with('/') {
                    return Err(format!("WORKDIR {rest:?}: must be an absolute path"));
                }
                self.working_dir = Some(rest.to_string());
            }
            "USER" => self.user = Some(rest.to_string()),
            "STOPSIGNAL" => self.stop_signal = Some(rest.to_string()),
            other => {
                return Err(format!(
                    "{other}: not supported by keel image import --change (CMD, ENTRYPOINT, ENV, WORKDIR, USER, STOPSIGNAL are)"
                ))
            }
        }
        Ok(())
    }

    /// The image config's `config` object these changes give.
    pub(crate) fn to_container_config(&self) -> ContainerConfig {
        ContainerConfig {
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            stop_signal: self.stop_signal.clone(),
        }
    }
}

/// Exec form (`["a", "b"]`, JSON) or shell form (`a b` → `/bin/sh -c "a b"`).
fn command(rest: &str, instr: &str) -> Result<Vec<String>, String> {
    if rest.starts_with('[') {
        serde_json::from_str::<Vec<String>>(rest)
            .map_err(|e| format!("{instr} {rest}: not a JSON array of strings: {e}"))
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
    }
}

/// `K=V K2="v 2"` pairs, or the legacy `K value with spaces` form.
fn env_pairs(rest: &str) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return Ok(vec![(name(k)?, v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    chars.next();
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                    continue;
                }
                (_, c) => word.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            return Err(format!("ENV {rest}: unterminated quote"));
        }
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("ENV {rest}: {word:?} is not NAME=value"))?;
        out.push((name(k)?, v.to_string()));
    }
    Ok(out)
}

fn name(k: &str) -> Result<String, String> {
    if k.is_empty() || k.contains('=') {
        return Err(format!("ENV: invalid variable name {k:?}"));
    }
    Ok(k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(lines: &[&str]) -> Result<ImageChanges, String> {
        let mut c = ImageChanges::default();
        for l in lines {
            c.apply(l)?;
        }
        Ok(c)
    }

    #[test]
    fn dockerfile_forms_as_docker_import_reads_them() {
        let c = apply(&[
            r#"CMD ["sleep", "3600"]"#,
            "ENTRYPOINT /bin/echo hi",
            r#"ENV A=1 B="two words" C=x\ y"#,
            "ENV D legacy form",
            "env A=3",
            "WORKDIR /srv",
            "USER 1000:1000",
            "STOPSIGNAL SIGQUIT",
        ])
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["sleep", "3600"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/echo hi"]);
        assert_eq!(c.env, ["B=two words", "C=x y", "D=legacy form", "A=3"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
    }

    #[test]
    fn unsupported_or_malformed_changes_are_errors() {
        for bad in [
            "EXPOSE 80",
            "CMD",
            r#"CMD ["unterminated"#,
            "WORKDIR relative",
            r#"ENV A="open"#,
            "ENV =x",
        ] {
            assert!(apply(&[bad]).is_err(), "{bad}");
        }
        assert!(apply(&["EXPOSE 80"]).unwrap_err().contains("EXPOSE"));
    }
}
