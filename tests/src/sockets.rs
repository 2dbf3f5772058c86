//! Which sockets a process listens on, from `/proc` (issue 26: "the trusted builder opens no
//! listening port" is checked against the process itself, not against what it prints).

/// Local addresses (`hex_ip:hex_port`, as `/proc/net/*` writes them) of the TCP sockets in
/// LISTEN state and the bound UDP sockets that process `pid` holds.
pub fn listening(pid: u32) -> Vec<String> {
    let mut inodes = std::collections::BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut found = Vec::new();
    for (table, listen_only) in [
        ("tcp", true),
        ("tcp6", true),
        ("udp", false),
        ("udp6", false),
    ] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listens = !listen_only || *state == "0A";
            if listens && inodes.contains(*inode) {
                found.push(format!("{table} {local}"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_of_this_process_is_seen_and_a_connection_is_not() {
        let me = std::process::id();
        let before = listening(me);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let now = listening(me);
        assert!(
            now.iter().any(|s| s.ends_with(&format!(":{port:04X}"))),
            "{now:?}"
        );
        // A connecting socket (not listening) is not counted.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        assert_eq!(listening(me).len(), now.len(), "{before:?}");
    }
}
