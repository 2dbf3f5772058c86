//! The job graph of a run as inline SVG: jobs in columns by depth in the
//! `needs` graph, edges as curves, each node coloured (by class, see
//! `app.css`) and labelled with its state word and duration.
//!
//! The store keeps jobs but not their `needs`; the run page reads those from
//! the pipeline file of the run's commit in the mirror. When that is not
//! possible (mirror gone, file unreadable) `needs` is `None` and the jobs are
//! drawn in their stored order, which is a start order, without edges.

use airlock_pipeline::events::JobState;
use maud::{Markup, html};

use super::layout;

const NODE_W: u32 = 184;
const NODE_H: u32 = 54;
const GAP_X: u32 = 64;
const GAP_Y: u32 = 16;
const PAD: u32 = 10;
/// Longest name drawn in full; longer ones are cut (the full name is the node's title).
const NAME_CHARS: usize = 20;

/// One job to draw.
#[derive(Debug, Clone)]
pub struct Node {
    /// Job name.
    pub name: String,
    /// State.
    pub state: JobState,
    /// How long it ran (or has been running).
    pub duration_ms: Option<u64>,
    /// When it started, for a running job (the page keeps its duration ticking).
    pub running_since: Option<u64>,
}

/// The column of each job: 0 for jobs that need nothing, else one more than
/// the deepest job it needs. Indices out of range and cycles (a validated
/// pipeline has none) are ignored rather than trusted.
pub fn layers(needs: &[Vec<usize>]) -> Vec<usize> {
    fn depth(
        i: usize,
        needs: &[Vec<usize>],
        memo: &mut [Option<usize>],
        visiting: &mut [bool],
    ) -> usize {
        if let Some(d) = memo[i] {
            return d;
        }
        if std::mem::replace(&mut visiting[i], true) {
            return 0;
        }
        let d = needs[i]
            .iter()
            .filter(|&&n| n < needs.len() && n != i)
            .map(|&n| depth(n, needs, memo, visiting) + 1)
            .max()
            .unwrap_or(0);
        visiting[i] = false;
        memo[i] = Some(d);
        d
    }
    let mut memo = vec![None; needs.len()];
    let mut visiting = vec![false; needs.len()];
    (0..needs.len())
        .map(|i| depth(i, needs, &mut memo, &mut visiting))
        .collect()
}

/// The meta line under a node's name: "passed · 3.2 s".
pub fn meta_text(state: JobState, duration_ms: Option<u64>) -> String {
    let word = layout::job_state_parts(state).2;
    match duration_ms {
        Some(d) if state != JobState::Pending && state != JobState::Skipped => {
            format!("{word} · {}", layout::duration(d))
        }
        _ => word.to_string(),
    }
}

/// The graph as an `<svg>` element.
pub fn svg(nodes: &[Node], needs: Option<&[Vec<usize>]>) -> Markup {
    if nodes.is_empty() {
        return html! {};
    }
    // Without needs: one row in start order.
    let columns: Vec<usize> = match needs {
        Some(n) if n.len() == nodes.len() => layers(n),
        _ => (0..nodes.len()).collect(),
    };
    let edges: Vec<(usize, usize)> = match needs {
        Some(n) if n.len() == nodes.len() => n
            .iter()
            .enumerate()
            .flat_map(|(to, from)| {
                from.iter()
                    .filter(move |&&f| f < nodes.len() && f != to)
                    .map(move |&f| (f, to))
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut incoming = vec![0usize; nodes.len()];
    for &(_, to) in &edges {
        incoming[to] += 1;
    }
    let column_count = columns.iter().copied().max().unwrap_or(0) + 1;
    let mut rows_in = vec![0u32; column_count];
    let mut position = Vec::with_capacity(nodes.len());
    for &c in &columns {
        position.push((c as u32, rows_in[c]));
        rows_in[c] += 1;
    }
    let max_rows = rows_in.iter().copied().max().unwrap_or(1);
    let width = PAD * 2 + column_count as u32 * NODE_W + (column_count as u32 - 1) * GAP_X;
    let height = PAD * 2 + max_rows * NODE_H + (max_rows - 1) * GAP_Y;
    let origin = |(c, r): (u32, u32)| (PAD + c * (NODE_W + GAP_X), PAD + r * (NODE_H + GAP_Y));

    html! {
        svg.dag xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Job graph"
            width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path.arrow d="M 0 0 L 10 5 L 0 10 z" {}
                }
            }
            @for (k, &(from, to)) in edges.iter().enumerate() {
                @let (x1, y1) = origin(position[from]);
                @let (x2, y2) = origin(position[to]);
                // Several edges into one job end a little apart, so each arrow stays visible.
                @let (nth, of) = (edges[..k].iter().filter(|e| e.1 == to).count() as i64, incoming[to] as i64);
                @let spread = ((2 * nth - (of - 1)) * 5).clamp(-(NODE_H as i64) / 3, NODE_H as i64 / 3);
                @let (sx, sy, ex) = (x1 + NODE_W, y1 + NODE_H / 2, x2 - 2);
                @let ey = (i64::from(y2 + NODE_H / 2) + spread).max(0);
                @let mid = (sx + ex) / 2;
                path.edge d={ "M " (sx) " " (sy) " C " (mid) " " (sy) ", " (mid) " " (ey) ", " (ex) " " (ey) } marker-end="url(#arrow)" {}
            }
            @for (i, node) in nodes.iter().enumerate() {
                @let (x, y) = origin(position[i]);
                @let (icon, class, word) = layout::job_state_parts(node.state);
                @let short: String = if node.name.chars().count() > NAME_CHARS {
                    node.name.chars().take(NAME_CHARS - 1).chain(std::iter::once('…')).collect()
                } else { node.name.clone() };
                a href={ "#job-" (node.name) } {
                    g class={ "node " (class) } data-job=(node.name) {
                        title { (node.name) ": " (word) }
                        rect.box x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="9" {}
                        rect.bar x=(x) y=(y) width="6" height=(NODE_H) rx="3" {}
                        text.n-icon x=(x + 16) y=(y + 33) { (icon) }
                        text.n-name x=(x + 38) y=(y + 23) { (short) }
                        text.n-meta x=(x + 38) y=(y + 41) data-since=[node.running_since] data-prefix=[node.running_since.map(|_| format!("{word} · "))] {
                            (meta_text(node.state, node.duration_ms))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_follow_needs_and_survive_bad_input() {
        // test -> build -> publish, lint alone, docs needs test and lint.
        let needs = vec![vec![], vec![0], vec![1], vec![], vec![0, 3]];
        assert_eq!(layers(&needs), vec![0, 1, 2, 0, 1]);
        // A cycle and an index out of range do not loop or panic.
        assert_eq!(layers(&[vec![1], vec![0], vec![7]]), vec![2, 1, 0]);
    }

    #[test]
    fn draws_escaped_names_and_edges() {
        let node = |name: &str, state| Node {
            name: name.into(),
            state,
            duration_ms: Some(1500),
            running_since: None,
        };
        let nodes = [
            node("test", JobState::Passed),
            node("build<x>", JobState::Running),
        ];
        let out = svg(&nodes, Some(&[vec![], vec![0]])).into_string();
        assert!(
            out.contains("class=\"node st-running\"") && out.contains("build&lt;x&gt;"),
            "{out}"
        );
        assert_eq!(out.matches("class=\"edge\"").count(), 1);
        assert!(out.contains("passed · 1.5 s"));
        let row = svg(&nodes, None).into_string();
        assert_eq!(row.matches("class=\"edge\"").count(), 0);
    }
}
