//! A trace as a tree: parent links, depth, self time, clock skew and the critical path, the way
//! Jaeger's query service and UI adjust and read a trace.
//!
//! Everything here walks iteratively: a trace is data from outside, and a chain of 100,000
//! spans must not overflow a stack.

use std::collections::HashMap;

use spanflow_model::{SpanId, SpanRow};

pub use spanflow_store::analytics::failed as is_error;

/// One span's place in the tree. Times are µs since the epoch, after the clock-skew shift.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index of the span in the rows the tree was built from.
    pub row: usize,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub depth: usize,
    pub start: i64,
    pub end: i64,
    /// How far the span was moved to fit its parent (µs; 0 when it was not).
    pub skew: i64,
    /// Duration not covered by any child (children that overlap count once).
    pub self_time: u64,
    pub on_critical_path: bool,
    /// Why the span is shown other than as stored.
    pub warnings: Vec<String>,
}

/// A stretch of the critical path: during `[start, end)` the trace waited on `span`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Index of the span in the rows.
    pub row: usize,
    pub start: i64,
    pub end: i64,
}

/// A trace's spans linked into a tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    /// One node per row, in the rows' order.
    pub nodes: Vec<Node>,
    /// Spans without a parent in the trace (true roots, then orphans), by start time.
    pub roots: Vec<usize>,
    /// Every span once, parents before children, siblings by start time (the waterfall's order).
    pub order: Vec<usize>,
    /// The critical path of the first root, latest section first.
    pub critical_path: Vec<Section>,
}

impl Tree {
    /// Links the rows of one trace. Rows may come in any order; a span id seen twice keeps its
    /// first row as the parent of its children.
    pub fn build(rows: &[SpanRow]) -> Tree {
        let mut by_id: HashMap<SpanId, usize> = HashMap::with_capacity(rows.len());
        for (index, row) in rows.iter().enumerate() {
            by_id.entry(row.span_id).or_insert(index);
        }
        let mut nodes: Vec<Node> = rows
            .iter()
            .enumerate()
            .map(|(index, row)| Node {
                row: index,
                parent: None,
                children: Vec::new(),
                depth: 0,
                start: row.start_time,
                end: row.end_time.max(row.start_time),
                skew: 0,
                self_time: 0,
                on_critical_path: false,
                warnings: Vec::new(),
            })
            .collect();
        for (index, row) in rows.iter().enumerate() {
            let Some(parent_id) = row.parent_span_id else {
                continue;
            };
            match by_id.get(&parent_id) {
                Some(&parent) if parent != index => nodes[index].parent = Some(parent),
                Some(_) => nodes[index]
                    .warnings
                    .push("the span names itself as its parent".to_string()),
                None => nodes[index]
                    .warnings
                    .push(format!("parent span {parent_id} is not in the trace")),
            }
        }
        break_cycles(&mut nodes);
        for index in 0..nodes.len() {
            if let Some(parent) = nodes[index].parent {
                nodes[parent].children.push(index);
            }
        }
        let by_start = |nodes: &[Node], a: &usize, b: &usize| {
            (nodes[*a].start, rows[*a].span_id).cmp(&(nodes[*b].start, rows[*b].span_id))
        };
        for index in 0..nodes.len() {
            let mut children = std::mem::take(&mut nodes[index].children);
            children.sort_by(|a, b| by_start(&nodes, a, b));
            nodes[index].children = children;
        }
        let mut roots: Vec<usize> = (0..nodes.len())
            .filter(|&index| nodes[index].parent.is_none())
            .collect();
        // True roots first, orphans after them, each by start time.
        roots.sort_by(|a, b| {
            rows[*a]
                .parent_span_id
                .is_some()
                .cmp(&rows[*b].parent_span_id.is_some())
                .then_with(|| by_start(&nodes, a, b))
        });
        let order = preorder(&nodes, &roots);
        adjust_clock_skew(&mut nodes, rows, &order);
        for &index in &order {
            nodes[index].depth = nodes[index]
                .parent
                .map_or(0, |parent| nodes[parent].depth + 1);
        }
        for index in 0..nodes.len() {
            nodes[index].self_time = self_time(&nodes, index);
        }
        let critical_path = roots
            .first()
            .map(|&root| critical_path(&nodes, root))
            .unwrap_or_default();
        for section in &critical_path {
            nodes[section.row].on_critical_path = true;
        }
        Tree {
            nodes,
            roots,
            order,
            critical_path,
        }
    }

    /// The first `limit` spans of the waterfall order, shallowest first, so that a cut trace
    /// keeps whole upper levels and no kept span loses its parent.
    pub fn keep_shallowest(&self, limit: usize) -> Vec<usize> {
        if limit >= self.nodes.len() {
            return self.order.clone();
        }
        let mut kept = vec![false; self.nodes.len()];
        let mut level: Vec<usize> = self.roots.clone();
        let mut n_kept = 0;
        'levels: while !level.is_empty() {
            let mut next = Vec::new();
            for &index in &level {
                if n_kept == limit {
                    break 'levels;
                }
                kept[index] = true;
                n_kept += 1;
                next.extend_from_slice(&self.nodes[index].children);
            }
            level = next;
        }
        self.order
            .iter()
            .copied()
            .filter(|&index| kept[index])
            .collect()
    }
}

/// Spans whose ancestors loop back to themselves are cut from their parent and become roots.
fn break_cycles(nodes: &mut [Node]) {
    // 0: not visited, 1: on the current walk, 2: known to reach a root.
    let mut state = vec![0u8; nodes.len()];
    for start in 0..nodes.len() {
        let mut walk = Vec::new();
        let mut at = start;
        loop {
            if state[at] == 2 {
                break;
            }
            if state[at] == 1 {
                nodes[at].parent = None;
                nodes[at]
                    .warnings
                    .push("the span's ancestors loop back to it; shown as a root".to_string());
                break;
            }
            state[at] = 1;
            walk.push(at);
            match nodes[at].parent {
                Some(parent) => at = parent,
                None => break,
            }
        }
        for index in walk {
            state[index] = 2;
        }
    }
}

fn preorder(nodes: &[Node], roots: &[usize]) -> Vec<usize> {
    let mut order = Vec::with_capacity(nodes.len());
    let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
    while let Some(index) = stack.pop() {
        order.push(index);
        stack.extend(nodes[index].children.iter().rev());
    }
    order
}

/// Where a span ran, to tell whether parent and child clocks can disagree.
fn host_key(row: &SpanRow) -> Option<String> {
    if !row.resource.host_name.is_empty() {
        return Some(row.resource.host_name.clone());
    }
    if let Some(ip) = row
        .resource_attribute("app.host.ip")
        .and_then(|value| value.to_text())
    {
        return Some(ip);
    }
    (!row.app_instance.is_empty()).then(|| row.app_instance.clone())
}

/// Jaeger's clock-skew adjuster: a child that ran on another host and does not fit inside its
/// parent is moved (with its subtree) so that it sits in the middle of the parent, the network
/// time split evenly between request and response. A child longer than its parent is left.
fn adjust_clock_skew(nodes: &mut [Node], rows: &[SpanRow], order: &[usize]) {
    let hosts: Vec<Option<String>> = rows.iter().map(host_key).collect();
    for &index in order {
        let Some(parent) = nodes[index].parent else {
            continue;
        };
        // The parent has already moved by its own skew; the child moves with it first.
        let inherited = nodes[parent].skew;
        nodes[index].start += inherited;
        nodes[index].end += inherited;
        nodes[index].skew = inherited;
        let (child_host, parent_host) = (&hosts[index], &hosts[parent]);
        if child_host.is_none() || parent_host.is_none() || child_host == parent_host {
            continue;
        }
        let (parent_start, parent_end) = (nodes[parent].start, nodes[parent].end);
        let (child_start, child_end) = (nodes[index].start, nodes[index].end);
        let parent_duration = parent_end - parent_start;
        let child_duration = child_end - child_start;
        if parent_duration < child_duration
            || (parent_start <= child_start && child_end <= parent_end)
        {
            continue;
        }
        let latency = (parent_duration - child_duration) / 2;
        let shift = parent_start + latency - child_start;
        nodes[index].start += shift;
        nodes[index].end += shift;
        nodes[index].skew += shift;
        nodes[index].warnings.push(format!(
            "moved {shift} µs to fit its parent: the clocks of {} and {} disagree",
            child_host.as_deref().unwrap_or_default(),
            parent_host.as_deref().unwrap_or_default()
        ));
    }
}

/// The span's duration less the union of its children's time inside it.
fn self_time(nodes: &[Node], index: usize) -> u64 {
    let node = &nodes[index];
    let mut covered = 0i64;
    let mut cursor = node.start;
    // Children are sorted by start, so one sweep merges their overlaps.
    for &child in &node.children {
        let start = nodes[child].start.max(cursor);
        let end = nodes[child].end.min(node.end);
        if end > start {
            covered += end - start;
            cursor = end;
        }
    }
    u64::try_from(node.end - node.start - covered).unwrap_or(0)
}

/// Jaeger UI's critical path: from the root's end, walk back through the child that finished
/// last, into it, and on its return through the child that finished before it started, and so
/// on; what no child covers is the span's own. Children are clipped to their parent.
fn critical_path(nodes: &[Node], root: usize) -> Vec<Section> {
    // Each span's children that start inside it, by clipped end, latest first; a cursor per
    // span remembers how far down that list the walk has come. A span's bound only ever
    // falls, so no child is taken twice and the walk ends.
    let mut sorted: HashMap<usize, Vec<(i64, usize)>> = HashMap::new();
    let mut next: HashMap<usize, usize> = HashMap::new();
    let clipped_end = |child: usize, parent: usize| nodes[child].end.min(nodes[parent].end);
    let mut path = Vec::new();
    let mut at = root;
    let mut bound = nodes[root].end;
    loop {
        let children = sorted.entry(at).or_insert_with(|| {
            let mut children: Vec<(i64, usize)> = nodes[at]
                .children
                .iter()
                .filter(|&&child| nodes[child].start < nodes[at].end)
                .map(|&child| (clipped_end(child, at), child))
                .collect();
            // Latest end first; of children ending together, the longest.
            children.sort_by(|a, b| {
                b.0.cmp(&a.0)
                    .then_with(|| nodes[a.1].start.cmp(&nodes[b.1].start))
            });
            children
        });
        let cursor = next.entry(at).or_insert(0);
        while *cursor < children.len() && children[*cursor].0 > bound {
            *cursor += 1;
        }
        let chosen = children.get(*cursor).copied();
        if let Some((end, child)) = chosen {
            *cursor += 1;
            if end < bound {
                path.push(Section {
                    row: nodes[at].row,
                    start: end,
                    end: bound,
                });
            }
            at = child;
            bound = end;
            continue;
        }
        let start = nodes[at].start.min(bound);
        if start < bound || path.is_empty() {
            path.push(Section {
                row: nodes[at].row,
                start,
                end: bound,
            });
        }
        match nodes[at].parent {
            Some(parent) if at != root => {
                bound = nodes[at].start.max(nodes[parent].start);
                at = parent;
            }
            _ => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spanflow_model::{ResourceTags, ResponseStatus, TraceId};
    use std::sync::Arc;

    fn id(n: u16) -> SpanId {
        let mut bytes = [0u8; 8];
        bytes[6..].copy_from_slice(&n.to_be_bytes());
        SpanId(bytes)
    }

    fn span(n: u16, parent: Option<u16>, start: i64, end: i64) -> SpanRow {
        SpanRow {
            trace_id: TraceId([1; 16]),
            span_id: id(n),
            parent_span_id: parent.map(id),
            start_time: start,
            end_time: end,
            response_duration: (end - start) as u64,
            ..SpanRow::default()
        }
    }

    fn on_host(mut row: SpanRow, host: &str) -> SpanRow {
        row.resource = Arc::new(ResourceTags {
            host_name: host.to_string(),
            ..ResourceTags::default()
        });
        row
    }

    fn spans_of(tree: &Tree, rows: &[SpanRow], indexes: &[usize]) -> Vec<SpanId> {
        indexes
            .iter()
            .map(|&index| rows[tree.nodes[index].row].span_id)
            .collect()
    }

    #[test]
    fn parents_come_before_children_and_siblings_by_start() {
        let rows = vec![
            span(3, Some(1), 30, 40),
            span(2, Some(1), 10, 20),
            span(4, Some(2), 12, 18),
            span(1, None, 0, 100),
        ];
        let tree = Tree::build(&rows);
        assert_eq!(
            spans_of(&tree, &rows, &tree.order),
            [id(1), id(2), id(4), id(3)]
        );
        let depths: Vec<usize> = tree.order.iter().map(|&i| tree.nodes[i].depth).collect();
        assert_eq!(depths, [0, 1, 2, 1]);
        assert_eq!(tree.roots, [3]);
    }

    #[test]
    fn self_time_counts_overlapping_children_once() {
        // Children 10..50 and 30..60 overlap: 50 µs of the root's 100 are covered.
        let rows = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 10, 50),
            span(3, Some(1), 30, 60),
        ];
        let tree = Tree::build(&rows);
        assert_eq!(tree.nodes[0].self_time, 50);
        assert_eq!(tree.nodes[1].self_time, 40);
        // A child running past its parent's end covers only the parent's part.
        let rows = vec![span(1, None, 0, 100), span(2, Some(1), 90, 150)];
        assert_eq!(Tree::build(&rows).nodes[0].self_time, 90);
    }

    #[test]
    fn orphans_and_loops_become_roots_with_a_warning() {
        let rows = vec![
            span(1, None, 0, 10),
            span(2, Some(99), 5, 6),
            span(3, Some(4), 1, 2),
            span(4, Some(3), 1, 2),
            span(5, Some(5), 3, 4),
        ];
        let tree = Tree::build(&rows);
        assert_eq!(tree.order.len(), 5, "every span appears once");
        assert_eq!(tree.roots[0], 0, "the true root first");
        assert!(tree.nodes[1].warnings[0].contains("not in the trace"));
        assert!(tree.nodes[4].warnings[0].contains("itself"));
        let looped = tree.nodes[2..4]
            .iter()
            .filter(|node| node.warnings.iter().any(|w| w.contains("loop")))
            .count();
        assert_eq!(looped, 1, "one link of the loop is cut");
    }

    #[test]
    fn a_child_on_a_skewed_host_is_moved_into_its_parent_with_its_subtree() {
        // The callee's clock is 1 s behind: it seems to start before its caller.
        let rows = vec![
            on_host(span(1, None, 1_000_000, 1_000_100), "a"),
            on_host(span(2, Some(1), 10, 90), "b"),
            on_host(span(3, Some(2), 20, 30), "b"),
        ];
        let tree = Tree::build(&rows);
        let child = &tree.nodes[1];
        assert_eq!((child.start, child.end), (1_000_010, 1_000_090));
        assert_eq!(child.skew, 1_000_000);
        assert!(child.warnings[0].contains("clocks of b and a"));
        let grandchild = &tree.nodes[2];
        assert_eq!((grandchild.start, grandchild.end), (1_000_020, 1_000_030));
        assert!(grandchild.warnings.is_empty(), "same host as its parent");
    }

    #[test]
    fn fitting_children_same_hosts_and_longer_children_are_not_moved() {
        let rows = vec![
            on_host(span(1, None, 100, 200), "a"),
            on_host(span(2, Some(1), 120, 180), "b"),
            on_host(span(3, Some(1), 0, 50), "a"),
            on_host(span(4, Some(1), 0, 500), "c"),
        ];
        let tree = Tree::build(&rows);
        assert!(tree.nodes.iter().all(|node| node.skew == 0));
    }

    #[test]
    fn the_critical_path_follows_the_last_finishing_children() {
        // root 0..100; a 10..40; b 20..90 (finishes last), b.1 30..60 inside b; c 70..80
        // ends before b's end but after... c overlaps b, so it is not on the path.
        let rows = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 10, 40),
            span(3, Some(1), 20, 90),
            span(4, Some(3), 30, 60),
            span(5, Some(1), 70, 80),
        ];
        let tree = Tree::build(&rows);
        let sections: Vec<(SpanId, i64, i64)> = tree
            .critical_path
            .iter()
            .map(|section| (rows[section.row].span_id, section.start, section.end))
            .collect();
        assert_eq!(
            sections,
            [
                (id(1), 90, 100),
                (id(3), 60, 90),
                (id(4), 30, 60),
                (id(3), 20, 30),
                (id(1), 0, 20),
            ]
        );
        let on_path: Vec<bool> = tree.nodes.iter().map(|n| n.on_critical_path).collect();
        assert_eq!(on_path, [true, false, true, true, false]);
    }

    #[test]
    fn sequential_children_are_all_on_the_critical_path() {
        let rows = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 10, 30),
            span(3, Some(1), 40, 60),
            span(4, Some(1), 60, 60),
            span(5, Some(1), 70, 90),
        ];
        let tree = Tree::build(&rows);
        let total: i64 = tree.critical_path.iter().map(|s| s.end - s.start).sum();
        assert_eq!(total, 100, "the path covers the root's whole duration");
        assert!(tree.nodes[1].on_critical_path);
        assert!(tree.nodes[2].on_critical_path);
        assert!(tree.nodes[4].on_critical_path);
    }

    #[test]
    fn a_chain_of_a_hundred_thousand_spans_needs_no_deep_stack() {
        let rows: Vec<SpanRow> = (0..100_000u32)
            .map(|n| {
                let mut row = span(0, None, i64::from(n), 200_000 - i64::from(n));
                row.span_id = SpanId(u64::from(n + 1).to_be_bytes());
                row.parent_span_id = (n > 0).then(|| SpanId(u64::from(n).to_be_bytes()));
                row
            })
            .collect();
        let tree = Tree::build(&rows);
        assert_eq!(tree.nodes[99_999].depth, 99_999);
        assert_eq!(tree.critical_path.len(), 199_999);
        let kept = tree.keep_shallowest(10);
        assert_eq!(kept, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_cut_trace_keeps_whole_upper_levels() {
        let rows = vec![
            span(1, None, 0, 100),
            span(2, Some(1), 10, 40),
            span(3, Some(2), 20, 30),
            span(4, Some(1), 50, 90),
            span(5, Some(4), 60, 70),
        ];
        let tree = Tree::build(&rows);
        let kept = tree.keep_shallowest(3);
        assert_eq!(spans_of(&tree, &rows, &kept), [id(1), id(2), id(4)]);
    }

    #[test]
    fn errors_are_otlp_errors_and_server_failures() {
        let mut row = span(1, None, 0, 1);
        assert!(!is_error(&row));
        row.status_code = 2;
        assert!(is_error(&row));
        row.status_code = 0;
        row.response_status = ResponseStatus::ClientError;
        assert!(!is_error(&row));
        row.response_status = ResponseStatus::ServerError;
        assert!(is_error(&row));
    }
}
