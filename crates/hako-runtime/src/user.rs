//! Resolving `-u name[:group]` / `uid[:gid]` against a container's `/etc/passwd` and
//! `/etc/group`, as Docker does.

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// `passwd` and `group` are the files' contents (empty when the image has none).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = passwd
        .lines()
        .filter_map(parse_passwd)
        .find(|p| p.0 == user_part || p.1.to_string() == user_part);
    let (name, uid, mut gid, home) = match (entry, user_part.parse::<u32>()) {
        (Some((n, u, g, h)), _) => (Some(n.to_string()), u, g, h.to_string()),
        (None, Ok(uid)) => (None, uid, 0, "/".to_string()),
        (None, Err(_)) => return Err(UserError::NoUser(user_part.to_string())),
    };
    if let Some(g) = group_part {
        gid = match group
            .lines()
            .filter_map(parse_group)
            .find(|e| e.0 == g || e.1.to_string() == g)
        {
            Some((_, id, _)) => id,
            None => g.parse().map_err(|_| UserError::NoGroup(g.to_string()))?,
        };
    }
    // Supplementary groups: every group that lists the user by name (only with a named
    // user and no explicit group, as Docker does).
    // The primary group comes first, as in runc (so `id` lists it among the groups).
    let mut additional = vec![gid];
    if let (Some(n), None) = (&name, group_part) {
        for (_, id, members) in group.lines().filter_map(parse_group) {
            if members.iter().any(|m| m == n) && id != gid && !additional.contains(&id) {
                additional.push(id);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

/// `--group-add`: each a group name from the container's `/etc/group`, or a number.
pub fn group_ids(names: &[String], group: &str) -> Result<Vec<u32>, UserError> {
    names
        .iter()
        .map(
            |g| match group.lines().filter_map(parse_group).find(|e| e.0 == g.as_str()) {
                Some((_, id, _)) => Ok(id),
                None => g.parse().map_err(|_| UserError::NoGroup(g.clone())),
            },
        )
        .collect()
}

fn parse_passwd(l: &str) -> Option<(&str, u32, u32, &str)> {
    let f: Vec<&str> = l.split(':').collect();
    if f.len() < 7 || l.starts_with('#') {
        return None;
    }
    Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?, f[5]))
}

fn parse_group(l: &str) -> Option<(&str, u32, Vec<String>)> {
    let f: Vec<&str> = l.split(':').collect();
    if f.len() < 4 || l.starts_with('#') {
        return None;
    }
    let members = f[3].split(',').filter(|m| !m.is_empty()).map(String::from).collect();
    Some((f[0], f[2].parse().ok()?, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1000::/srv:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app\naudio:x:29:app,other\napp:x:1000:\nnogroup:x:65534:\n";

    #[test]
    fn resolves_like_docker() {
        let r = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            (r.uid, r.gid, r.additional_gids.clone(), r.home.as_str()),
            (1000, 1000, vec![1000, 10, 29], "/srv")
        );
        let r = resolve("nobody:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (65534, 10));
        let r = resolve("4242:4343", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (4242, 4343));
        let r = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        assert!(matches!(resolve("ghost", PASSWD, GROUP), Err(UserError::NoUser(_))));
        assert!(matches!(
            resolve("app:ghosts", PASSWD, GROUP),
            Err(UserError::NoGroup(_))
        ));
    }

    #[test]
    fn added_groups_by_name_or_number() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            group_ids(&names(&["audio", "4242", "0"]), GROUP).unwrap(),
            vec![29, 4242, 0]
        );
        assert!(matches!(
            group_ids(&names(&["ghosts"]), GROUP),
            Err(UserError::NoGroup(_))
        ));
    }
}
