//! `check-imports`: no circle of imports between the files of one crate (issue 13).
//!
//! Cargo already refuses cycles between crates; this finds them between the files of each
//! crate under `crates/*/src`. Every `.rs` file is a module (`lib.rs`, or `main.rs` when
//! there is no `lib.rs`, is the root; `foo.rs` + `foo/bar.rs` is `foo::bar`). File A
//! depends on file B when A's non-test code names a path `crate::...`, `super::...`,
//! `self::...` or `child::...` (a module A declares) whose longest prefix that is a module
//! is B, `use` groups (`use crate::{a::X, b::{self, Y}}`) included. The check reads tokens,
//! not a syntax tree: comments, strings and char literals are dropped first, and anything
//! under `#[cfg(test)]` (a `mod tests { .. }` block, a `use`, a field) is skipped, as are
//! test files (`tests.rs`, anything under a `tests/` folder), since tests may import
//! anything. Paths to the crate root are no edge: `lib.rs` only declares modules and
//! re-exports. Re-exports are not chased: a path through module M is an edge to M's file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::root;

/// `cargo xtask check-imports`: prints every cycle and fails if there is one.
pub(crate) fn check() -> Result<()> {
    let crates = root().join("crates");
    let mut srcs: Vec<_> = std::fs::read_dir(&crates)
        .with_context(|| format!("listing {}", crates.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    srcs.sort();
    let (mut found, mut nfiles) = (0, 0);
    for src in &srcs {
        let files = crate_sources(src)?;
        nfiles += files.len();
        let shown = src.strip_prefix(root()).unwrap_or(src).display();
        for cycle in cycles(&files) {
            eprintln!("xtask: check-imports: import cycle in {shown} between {cycle}");
            found += 1;
        }
    }
    if found > 0 {
        bail!(
            "{found} import cycle(s) between the files of one crate (issue 13); break each by \
             moving what the files share into one of them or into a module they both import"
        );
    }
    eprintln!("xtask: check-imports: no import cycles in {nfiles} files of {} crates", srcs.len());
    Ok(())
}

/// Every `.rs` file under `src`, keyed by its path relative to `src` with `/` separators.
/// A `main.rs` beside a `lib.rs`, and `src/bin/`, are separate crates (they reach the
/// library through its name), so they are left out.
fn crate_sources(src: &Path) -> Result<BTreeMap<String, String>> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let rel = format!("{rel}{name}");
            if path.is_dir() {
                walk(&path, &format!("{rel}/"), out)?;
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                out.insert(rel, text);
            }
        }
        Ok(())
    }
    let mut files = BTreeMap::new();
    walk(src, "", &mut files)?;
    if files.contains_key("lib.rs") {
        files.remove("main.rs");
    }
    if !files.contains_key("bin.rs") {
        files.retain(|rel, _| !rel.starts_with("bin/"));
    }
    Ok(files)
}

/// A module's path from the crate root: `["engine", "host"]`; the root is empty.
type ModPath = Vec<String>;

/// One set of files that import each other in a circle (a strongly connected component of
/// the import graph), with every import between its files.
#[derive(Debug, PartialEq, Eq)]
struct Cycle {
    files: Vec<String>,
    edges: Vec<Edge>,
}

/// File `from` names `via` (at `from:line`, the first of `1 + more` such paths) which
/// resolves to file `to`.
#[derive(Debug, PartialEq, Eq)]
struct Edge {
    from: String,
    to: String,
    via: String,
    line: usize,
    more: usize,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.files.join(", "))?;
        for e in &self.edges {
            write!(f, "\n    {} -> {} (via {} at {}:{}", e.from, e.to, e.via, e.from, e.line)?;
            match e.more {
                0 => write!(f, ")")?,
                n => write!(f, ", and {n} more)")?,
            }
        }
        Ok(())
    }
}

/// The import graph of one crate's files.
#[derive(Debug)]
struct Graph {
    /// File names, sorted; nodes are indices into this.
    names: Vec<String>,
    /// For each edge, the paths that make it, as (path, line), in file order.
    edges: BTreeMap<(usize, usize), Vec<(String, usize)>>,
}

impl Graph {
    /// `files` maps each file's path relative to `src` to its text.
    fn new(files: &BTreeMap<String, String>) -> Graph {
        let names: Vec<String> = files.keys().cloned().collect();
        let module_of: Vec<ModPath> = names.iter().map(|n| module_path(n)).collect();
        let index: BTreeMap<&ModPath, usize> =
            module_of.iter().enumerate().map(|(i, m)| (m, i)).collect();
        let mut modules: BTreeSet<ModPath> = module_of.iter().cloned().collect();
        modules.insert(Vec::new());
        let scans: Vec<FileScan> = files
            .values()
            .zip(&module_of)
            .map(|(text, module)| scan(&lex(text), module, &modules))
            .collect();
        // A module is test code when it is or sits in a `tests` module, or is declared under
        // `#[cfg(test)]`, or its file opens with `#![cfg(test)]`.
        let mut test_mods: BTreeSet<&ModPath> =
            scans.iter().flat_map(|s| &s.test_children).collect();
        test_mods.extend(module_of.iter().zip(&scans).filter(|(_, s)| s.test_only).map(|(m, _)| m));
        let is_test = |m: &ModPath| {
            m.iter().any(|s| s == "tests")
                || (1..=m.len()).any(|n| test_mods.contains(&m[..n].to_vec()))
        };
        let mut edges: BTreeMap<(usize, usize), Vec<(String, usize)>> = BTreeMap::new();
        for (from, (module, scan)) in module_of.iter().zip(&scans).enumerate() {
            // Paths to the root are no edge, so the root's own imports close no circle.
            if module.is_empty() || is_test(module) {
                continue;
            }
            for r in &scan.refs {
                let Some(target) = resolve(&r.scope, &r.segs, &modules) else { continue };
                if target.is_empty() || &target == module {
                    continue;
                }
                let Some(&to) = index.get(&target) else { continue };
                edges.entry((from, to)).or_default().push((display_path(&r.segs), r.line));
            }
        }
        Graph { names, edges }
    }
}

/// The import cycles among `files` (path relative to `src` → text), each with its files and
/// edges sorted by name, in order of their first file.
fn cycles(files: &BTreeMap<String, String>) -> Vec<Cycle> {
    let graph = Graph::new(files);
    let mut adj = vec![Vec::new(); graph.names.len()];
    for &(from, to) in graph.edges.keys() {
        adj[from].push(to);
    }
    let mut out: Vec<Cycle> = strongly_connected(&adj)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|members| {
            let edges = graph
                .edges
                .iter()
                .filter(|((from, to), _)| members.contains(from) && members.contains(to))
                .map(|(&(from, to), vias)| Edge {
                    from: graph.names[from].clone(),
                    to: graph.names[to].clone(),
                    via: vias[0].0.clone(),
                    line: vias[0].1,
                    more: vias.len() - 1,
                })
                .collect();
            let mut files: Vec<String> = members.iter().map(|&m| graph.names[m].clone()).collect();
            files.sort();
            Cycle { files, edges }
        })
        .collect();
    out.sort_by(|a, b| a.files.cmp(&b.files));
    out
}

/// `foo/bar.rs` → `foo::bar`; `lib.rs` and `main.rs` → the root; `foo/mod.rs` → `foo`.
fn module_path(rel: &str) -> ModPath {
    let mut segs: ModPath = rel.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if segs.len() == 1 && (segs[0] == "lib" || segs[0] == "main") {
        segs.clear();
    }
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    segs
}

/// A path as written, without the `self` of a `use a::{self}` group.
fn display_path(segs: &[String]) -> String {
    let kept: Vec<&str> = segs
        .iter()
        .enumerate()
        .filter(|(i, s)| *i == 0 || *s != "self")
        .map(|(_, s)| s.as_str())
        .collect();
    kept.join("::")
}

/// The file module that `segs`, named in module `scope`, refers to: the longest prefix of
/// the path that is a module, then the nearest enclosing file module (`scope` may be an
/// inline `mod x { .. }`). None when the path does not start in this crate.
fn resolve(scope: &[String], segs: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let first = segs.first()?;
    let (mut at, rest) = match first.as_str() {
        "crate" => (Vec::new(), &segs[1..]),
        "self" | "super" => (scope.to_vec(), segs),
        _ if modules.contains(&[scope, std::slice::from_ref(first)].concat()) => {
            (scope.to_vec(), segs)
        }
        _ => return None,
    };
    let mut rest = rest.iter().peekable();
    while let Some(seg) = rest.next_if(|s| *s == "super" || *s == "self") {
        if seg == "super" {
            at.pop()?;
        }
    }
    for seg in rest.filter(|s| *s != "self") {
        at.push(seg.clone());
        if !modules.contains(&at) {
            at.pop();
            break;
        }
    }
    while !modules.contains(&at) {
        at.pop()?;
    }
    Some(at)
}

/// Strongly connected components (Tarjan's algorithm); recursion depth is at most the
/// number of files in a crate.
fn strongly_connected(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct Tarjan<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.adj[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                self.out.push(component);
            }
        }
    }
    let n = adj.len();
    let mut t = Tarjan {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A string, char or number literal, or a lifetime; its text is dropped.
    Literal,
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Rust tokens with comments dropped and literals blanked, each with its 1-based line.
fn lex(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let (mut i, mut line) = (0, 1);
    let mut out = Vec::new();
    while i < c.len() {
        let at = line;
        let tok = match c[i] {
            '\n' => {
                line += 1;
                i += 1;
                continue;
            }
            ch if ch.is_whitespace() => {
                i += 1;
                continue;
            }
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                i = skip_block_comment(&c, i, &mut line);
                continue;
            }
            '"' => {
                i = skip_quoted(&c, i, &mut line);
                Tok::Literal
            }
            '\'' => {
                i = skip_char_or_lifetime(&c, i);
                Tok::Literal
            }
            ':' if c.get(i + 1) == Some(&':') => {
                i += 2;
                Tok::PathSep
            }
            ch if ch.is_ascii_digit() => {
                while i < c.len() && is_ident_continue(c[i]) {
                    i += 1;
                }
                Tok::Literal
            }
            ch if is_ident_start(ch) => lex_word(&c, &mut i, &mut line),
            ch => {
                i += 1;
                Tok::Punct(ch)
            }
        };
        out.push(Token { tok, line: at });
    }
    out
}

fn is_ident_start(ch: char) -> bool {
    ch == '_' || ch.is_alphabetic()
}

fn is_ident_continue(ch: char) -> bool {
    ch == '_' || ch.is_alphanumeric()
}

/// An identifier, a raw identifier (`r#type`), or a prefixed literal (`b"…"`, `br#"…"#`,
/// `c"…"`, `b'x'`), starting at `c[*i]`.
fn lex_word(c: &[char], i: &mut usize, line: &mut usize) -> Tok {
    let start = *i;
    while *i < c.len() && is_ident_continue(c[*i]) {
        *i += 1;
    }
    let word: String = c[start..*i].iter().collect();
    let next = c.get(*i).copied();
    let raw_string_follows = || {
        let hashes = c[*i..].iter().take_while(|&&ch| ch == '#').count();
        c.get(*i + hashes) == Some(&'"')
    };
    match (word.as_str(), next) {
        ("r" | "br" | "cr", Some('"' | '#')) if raw_string_follows() => {
            *i = skip_raw(c, *i, line);
            Tok::Literal
        }
        ("b" | "c", Some('"')) => {
            *i = skip_quoted(c, *i, line);
            Tok::Literal
        }
        ("b", Some('\'')) => {
            *i = skip_char_or_lifetime(c, *i);
            Tok::Literal
        }
        ("r", Some('#')) if c.get(*i + 1).is_some_and(|&ch| is_ident_start(ch)) => {
            *i += 1;
            let start = *i;
            while *i < c.len() && is_ident_continue(c[*i]) {
                *i += 1;
            }
            Tok::Ident(c[start..*i].iter().collect())
        }
        _ => Tok::Ident(word),
    }
}

/// Past a (nesting) block comment that opens at `c[i]`.
fn skip_block_comment(c: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        match (c[i], c.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            (ch, _) => {
                *line += usize::from(ch == '\n');
                i += 1;
            }
        }
    }
    i
}

/// Past a `"…"` string (with escapes) whose opening quote is `c[i]`.
fn skip_quoted(c: &[char], mut i: usize, line: &mut usize) -> usize {
    i += 1;
    while i < c.len() {
        match c[i] {
            '"' => return i + 1,
            '\\' => {
                *line += usize::from(c.get(i + 1) == Some(&'\n'));
                i += 2;
            }
            ch => {
                *line += usize::from(ch == '\n');
                i += 1;
            }
        }
    }
    i
}

/// Past a raw string whose `#`s (or opening quote) start at `c[i]`.
fn skip_raw(c: &[char], mut i: usize, line: &mut usize) -> usize {
    let hashes = c[i..].iter().take_while(|&&ch| ch == '#').count();
    i += hashes + 1;
    while i < c.len() {
        if c[i] == '"' && c[i + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes
        {
            return i + 1 + hashes;
        }
        *line += usize::from(c[i] == '\n');
        i += 1;
    }
    i
}

/// Past a char literal (`'x'`, `'\n'`, `'\u{1F600}'`) or a lifetime (`'a`) at `c[i]`.
fn skip_char_or_lifetime(c: &[char], mut i: usize) -> usize {
    i += 1;
    if c.get(i) == Some(&'\\') {
        i += 2;
        while i < c.len() && c[i] != '\'' {
            i += 1;
        }
        return i + 1;
    }
    if c.get(i + 1) == Some(&'\'') {
        return i + 2;
    }
    while i < c.len() && is_ident_continue(c[i]) {
        i += 1;
    }
    i
}

/// What a file's non-test code refers to.
#[derive(Debug, Default)]
struct FileScan {
    refs: Vec<PathRef>,
    /// Modules declared `#[cfg(test)] mod x;` here.
    test_children: Vec<ModPath>,
    /// The file opens with `#![cfg(test)]`.
    test_only: bool,
}

/// A path `segs` that may start in this crate, named at `line` in module `scope` (the
/// file's module, or an inline module in it).
#[derive(Debug)]
struct PathRef {
    scope: ModPath,
    segs: Vec<String>,
    line: usize,
}

fn ident(toks: &[Token], i: usize) -> Option<&str> {
    match toks.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(w)) => Some(w),
        _ => None,
    }
}

fn is_punct(toks: &[Token], i: usize, ch: char) -> bool {
    toks.get(i).is_some_and(|t| t.tok == Tok::Punct(ch))
}

/// The paths a file names that may start in this crate, outside test code. `module` is the
/// file's module and `modules` every module of the crate (to know its child modules).
fn scan(toks: &[Token], module: &[String], modules: &BTreeSet<ModPath>) -> FileScan {
    let mut out = FileScan::default();
    // One entry per open brace: the name of the inline module it opens, if any.
    let mut braces: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let scope: ModPath = module.iter().chain(braces.iter().flatten()).cloned().collect();
        match &toks[i].tok {
            Tok::Punct('#') => {
                let inner = is_punct(toks, i + 1, '!');
                let open = i + 1 + usize::from(inner);
                if !is_punct(toks, open, '[') {
                    i += 1;
                    continue;
                }
                let close = matching(toks, open);
                i = close + 1;
                if is_test_cfg(&toks[open + 1..close.min(toks.len())]) {
                    if !inner {
                        i = skip_test_item(toks, i, &scope, &mut out.test_children);
                    } else if braces.is_empty() {
                        out.test_only = true;
                        return out;
                    }
                }
            }
            Tok::Punct('{') => {
                let name = ident(toks, i.wrapping_sub(1))
                    .filter(|_| ident(toks, i.wrapping_sub(2)) == Some("mod"))
                    .map(str::to_owned);
                braces.push(name);
                i += 1;
            }
            Tok::Punct('}') => {
                braces.pop();
                i += 1;
            }
            // A visibility (`pub(super)`, `pub(in crate::a)`) names no item.
            Tok::Ident(w) if w == "pub" && is_punct(toks, i + 1, '(') => {
                i = matching(toks, i + 1) + 1;
            }
            Tok::Ident(w) if w == "use" && is_punct(toks, i + 1, '{') => {
                i = use_tree(toks, i + 1, Vec::new(), &scope, &mut out.refs);
            }
            Tok::Ident(w) if starts_path(toks, i, w, &scope, modules) => {
                i = use_tree(toks, i, Vec::new(), &scope, &mut out.refs);
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether `w` at `toks[i]` starts a path that may be in this crate: `crate::`, `self::`,
/// `super::`, `$crate::` or `child::` for a child module of `scope`, not itself the tail of
/// a longer path or a method name (`x.child::<T>()`).
fn starts_path(
    toks: &[Token],
    i: usize,
    w: &str,
    scope: &[String],
    modules: &BTreeSet<ModPath>,
) -> bool {
    let follows = toks.get(i + 1).is_some_and(|t| t.tok == Tok::PathSep);
    let prev = i.checked_sub(1).map(|p| &toks[p].tok);
    let tail = matches!(prev, Some(Tok::PathSep | Tok::Punct('.')));
    follows
        && !tail
        && (matches!(w, "crate" | "self" | "super")
            || modules.contains(&[scope, &[w.to_owned()]].concat()))
}

/// Index of the bracket that closes the one at `toks[open]`, or `toks.len()`.
fn matching(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Whether an attribute's tokens are `cfg(test)`, or a `cfg(all(..))` that requires `test`.
fn is_test_cfg(attr: &[Token]) -> bool {
    fn requires_test(pred: &[&Tok]) -> bool {
        match pred {
            [Tok::Ident(w)] => w == "test",
            [Tok::Ident(all), Tok::Punct('('), args @ .., Tok::Punct(')')] if all == "all" => {
                split_args(args).iter().any(|a| requires_test(a))
            }
            _ => false,
        }
    }
    let toks: Vec<&Tok> = attr.iter().map(|t| &t.tok).collect();
    match &toks[..] {
        [Tok::Ident(cfg), Tok::Punct('('), pred @ .., Tok::Punct(')')] => {
            cfg == "cfg" && requires_test(pred)
        }
        _ => false,
    }
}

/// `a, all(b, c), d` → `[a]`, `[all(b, c)]`, `[d]`.
fn split_args<'a>(toks: &'a [&'a Tok]) -> Vec<&'a [&'a Tok]> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth = depth.saturating_sub(1),
            Tok::Punct(',') if depth == 0 => {
                out.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&toks[start..]);
    out
}

/// Past the item, statement, field or match arm at `toks[i]` that a `#[cfg(test)]` marks.
/// A `mod x;` among them is recorded as a test module.
fn skip_test_item(
    toks: &[Token],
    mut i: usize,
    scope: &[String],
    test_children: &mut Vec<ModPath>,
) -> usize {
    while is_punct(toks, i, '#') && is_punct(toks, i + 1, '[') {
        i = matching(toks, i + 1) + 1;
    }
    if ident(toks, i) == Some("pub") {
        i += 1;
        if is_punct(toks, i, '(') {
            i = matching(toks, i) + 1;
        }
    }
    if let (Some("mod"), Some(name), true) =
        (ident(toks, i), ident(toks, i + 1), is_punct(toks, i + 2, ';'))
    {
        test_children.push([scope, &[name.to_owned()]].concat());
        return i + 3;
    }
    // These end at `;` even after a braced part (`use a::{b, c};`, `let x = S { .. };`).
    let to_semicolon = matches!(ident(toks, i), Some("use" | "let" | "static" | "type"))
        || (ident(toks, i) == Some("const")
            && !matches!(ident(toks, i + 1), Some("fn" | "unsafe" | "async" | "extern")));
    let mut depth = 0usize;
    while let Some(t) = toks.get(i) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            // The enclosing block ends: leave its bracket to the caller.
            Tok::Punct(')' | ']' | '}') if depth == 0 => return i,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 && t.tok == Tok::Punct('}') && !to_semicolon {
                    return i + 1;
                }
            }
            Tok::Punct(';' | ',') if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Reads the path or `use` tree at `toks[i]` (an identifier, or a `{` group), under
/// `prefix`, pushing each full path it names; returns the index past it.
fn use_tree(
    toks: &[Token],
    mut i: usize,
    mut segs: Vec<String>,
    scope: &[String],
    out: &mut Vec<PathRef>,
) -> usize {
    let line = toks.get(i).map_or(0, |t| t.line);
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(w)) => {
                segs.push(w.clone());
                i += 1;
            }
            Some(Tok::Punct('{')) => return use_group(toks, i, &segs, scope, out),
            // `a::*`, `a::<T>`, or the end of the path.
            _ => break,
        }
        if toks.get(i).map(|t| &t.tok) != Some(&Tok::PathSep) {
            break;
        }
        i += 1;
    }
    if !segs.is_empty() {
        out.push(PathRef { scope: scope.to_vec(), segs, line });
    }
    i
}

/// Reads the `{ tree, tree as x, self, * }` group at `toks[open]` under `prefix`.
fn use_group(
    toks: &[Token],
    open: usize,
    prefix: &[String],
    scope: &[String],
    out: &mut Vec<PathRef>,
) -> usize {
    let mut i = open + 1;
    while let Some(t) = toks.get(i) {
        match &t.tok {
            Tok::Punct('}') => return i + 1,
            Tok::Ident(w) if w == "as" => i += 2,
            Tok::Ident(_) | Tok::Punct('{') => i = use_tree(toks, i, prefix.to_vec(), scope, out),
            _ => i += 1,
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Every edge as `from -> to via path:line`.
    fn edges(files: &[(&str, &str)]) -> Vec<String> {
        let g = Graph::new(&tree(files));
        g.edges
            .iter()
            .flat_map(|((from, to), vias)| {
                let (from, to) = (&g.names[*from], &g.names[*to]);
                vias.iter().map(move |(via, line)| format!("{from} -> {to} via {via}:{line}"))
            })
            .collect()
    }

    fn edge(from: &str, to: &str, via: &str, line: usize, more: usize) -> Edge {
        Edge { from: from.into(), to: to.into(), via: via.into(), line, more }
    }

    #[test]
    fn a_two_file_cycle_is_found() {
        let found = cycles(&tree(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub use a::A;\n"),
            ("a.rs", "//! A.\n\nuse crate::b::B;\n\npub struct A(B);\n"),
            (
                "b.rs",
                "use crate::error::Error;\npub struct B;\nimpl B { fn a(&self) -> crate::a::A { todo!() } }\nfn f() -> crate::a::A {}\n",
            ),
            ("error.rs", "pub struct Error;\n"),
        ]));
        assert_eq!(
            found,
            vec![Cycle {
                files: vec!["a.rs".into(), "b.rs".into()],
                edges: vec![
                    edge("a.rs", "b.rs", "crate::b::B", 3, 0),
                    edge("b.rs", "a.rs", "crate::a::A", 3, 1)
                ],
            }]
        );
        assert_eq!(
            found[0].to_string(),
            "a.rs, b.rs:\n    a.rs -> b.rs (via crate::b::B at a.rs:3)\n    \
             b.rs -> a.rs (via crate::a::A at b.rs:3, and 1 more)"
        );
    }

    #[test]
    fn a_parent_and_child_using_each_other_is_a_cycle() {
        // The parent names its child bare (`queue::JobQueue`), through `self::`, or from the
        // crate root; the child names the parent through `super::` or `super::super::`.
        for (parent, child) in [
            ("mod queue;\nuse queue::JobQueue;\npub struct Config;\n", "use super::Config;\n"),
            ("mod queue;\nfn f() { self::queue::run() }\n", "fn g() { super::Config::new(); }\n"),
            ("mod queue;\nuse crate::fs::queue::{JobQueue};\n", "use crate::fs::Config;\n"),
        ] {
            let found = cycles(&tree(&[
                ("lib.rs", "mod fs;\n"),
                ("fs.rs", parent),
                ("fs/queue.rs", child),
            ]));
            assert_eq!(found.len(), 1, "{parent:?} / {child:?}: {found:?}");
            assert_eq!(found[0].files, ["fs.rs", "fs/queue.rs"]);
            assert_eq!(found[0].edges.len(), 2);
        }
        let found = cycles(&tree(&[
            ("lib.rs", "mod fs;\n"),
            ("fs.rs", "mod queue;\nuse queue::job::Job;\n"),
            ("fs/queue.rs", "pub mod job;\n"),
            ("fs/queue/job.rs", "use super::super::Config;\n"),
        ]));
        assert_eq!(
            found,
            vec![Cycle {
                files: vec!["fs.rs".into(), "fs/queue/job.rs".into()],
                edges: vec![
                    edge("fs.rs", "fs/queue/job.rs", "queue::job::Job", 2, 0),
                    edge("fs/queue/job.rs", "fs.rs", "super::super::Config", 1, 0),
                ],
            }]
        );
    }

    #[test]
    fn comments_strings_and_chars_name_nothing() {
        let a = r####"//! See crate::b::B.
/// Unlike crate::b::B, ...
/* crate::b::B /* nested: crate::b::B */ crate::b::B */
const S: &str = "crate::b::B \" crate::b::B";
const R: &str = r#"crate::b::B " crate::b::B"#;
const Y: &[u8] = br##"crate::b::B"# crate::b::B"##;
const Q: char = '"';
const E: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { x }
fn g() -> crate::c::C { todo!() }
"####;
        let files = [
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", a),
            ("b.rs", "use crate::a::f;\n"),
            ("c.rs", ""),
        ];
        assert_eq!(
            edges(&files),
            ["a.rs -> c.rs via crate::c::C:10", "b.rs -> a.rs via crate::a::f:1"]
        );
        assert_eq!(cycles(&tree(&files)), []);
    }

    #[test]
    fn test_code_names_nothing() {
        let a = "pub struct A;\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::b::B;\n    fn f() { crate::b::g() }\n}\n\
                 #[cfg(all(test, not(damacy_loom)))]\n#[allow(dead_code)]\nmod loom { use crate::b::B; }\n\
                 #[cfg(test)]\nuse crate::b::{B, g};\n\
                 struct S {\n    #[cfg(test)]\n    b: crate::b::B,\n    x: u8,\n}\n\
                 #[cfg(test)]\nmod helpers;\n\
                 #[cfg(not(test))]\nfn real() -> crate::c::C { todo!() }\n";
        let files = [
            ("lib.rs", "mod a;\nmod b;\nmod c;\n#[cfg(test)]\nmod tests;\n"),
            ("a.rs", a),
            ("a/helpers.rs", "use crate::b::B;\n"),
            ("a/tests.rs", "use crate::b::B;\n"),
            ("b.rs", "use crate::a::A;\npub struct B;\n"),
            ("b/tests/loom.rs", "use crate::b::B;\n"),
            ("c.rs", "#![cfg(test)]\nuse crate::a::A;\n"),
            ("tests.rs", "use crate::b::B;\n"),
        ];
        assert_eq!(
            edges(&files),
            ["a.rs -> c.rs via crate::c::C:21", "b.rs -> a.rs via crate::a::A:1"]
        );
        assert_eq!(cycles(&tree(&files)), []);
    }

    #[test]
    fn grouped_uses_resolve() {
        let files = [
            ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\npub struct Root;\n"),
            (
                "a.rs",
                "use crate::{Root, b::B, c::{self, C as Cee}};\nuse crate::d::{\n    e::{E, *},\n    F,\n};\n",
            ),
            ("b.rs", "use {crate::a::A, std::fmt};\n"),
            ("c.rs", ""),
            ("d.rs", "pub mod e;\n"),
            ("d/e.rs", ""),
        ];
        assert_eq!(
            edges(&files),
            [
                "a.rs -> b.rs via crate::b::B:1",
                "a.rs -> c.rs via crate::c:1",
                "a.rs -> c.rs via crate::c::C:1",
                "a.rs -> d.rs via crate::d::F:4",
                "a.rs -> d/e.rs via crate::d::e::E:3",
                "b.rs -> a.rs via crate::a::A:1",
            ]
        );
        assert_eq!(
            cycles(&tree(&files)),
            vec![Cycle {
                files: vec!["a.rs".into(), "b.rs".into()],
                edges: vec![
                    edge("a.rs", "b.rs", "crate::b::B", 1, 0),
                    edge("b.rs", "a.rs", "crate::a::A", 1, 0)
                ],
            }]
        );
    }

    #[test]
    fn visibilities_the_root_and_the_file_itself_are_no_edges() {
        let a = "pub(super) fn f() {}\npub(in crate::b) fn g() {}\nuse crate::Thing;\n\
                 use self::X;\nfn h() { crate::a::f(); x.q::<u8>(); std::q::x(); }\n\
                 pub mod inner { use super::super::b::B; }\nmod q;\n";
        let files = [
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", a),
            ("a/q.rs", ""),
            ("b.rs", "use crate::a::f;\n"),
        ];
        assert_eq!(
            edges(&files),
            ["a.rs -> b.rs via super::super::b::B:6", "b.rs -> a.rs via crate::a::f:1"]
        );
    }

    #[test]
    fn an_acyclic_tree_passes() {
        let files = [
            ("lib.rs", "pub mod error;\npub mod fs;\npub mod key;\nuse fs::Fs;\n"),
            ("error.rs", "pub enum Error { Key(crate::key::Key) }\n"),
            ("key.rs", "pub struct Key;\n"),
            ("fs.rs", "mod queue;\nuse crate::error::Error;\nuse queue::Queue;\n"),
            ("fs/queue.rs", "use crate::{error::Error, key::Key};\n"),
        ];
        assert_eq!(
            edges(&files),
            [
                "error.rs -> key.rs via crate::key::Key:1",
                "fs.rs -> error.rs via crate::error::Error:2",
                "fs.rs -> fs/queue.rs via queue::Queue:3",
                "fs/queue.rs -> error.rs via crate::error::Error:1",
                "fs/queue.rs -> key.rs via crate::key::Key:1",
            ]
        );
        assert_eq!(cycles(&tree(&files)), []);
    }

    #[test]
    fn every_circle_is_reported_with_all_its_edges() {
        let found = cycles(&tree(&[
            ("lib.rs", "mod a; mod b; mod c; mod x; mod y;\n"),
            ("a.rs", "use crate::b::B;\nuse crate::c::C;\n"),
            ("b.rs", "use crate::c::C;\n"),
            ("c.rs", "use crate::a::A;\n"),
            ("x.rs", "use crate::y::Y;\n"),
            ("y.rs", "use crate::x::X;\nuse crate::a::A;\n"),
        ]));
        let files: Vec<&[String]> = found.iter().map(|c| &c.files[..]).collect();
        assert_eq!(files, [&["a.rs", "b.rs", "c.rs"][..], &["x.rs", "y.rs"][..]]);
        let abc: Vec<(&str, &str)> =
            found[0].edges.iter().map(|e| (&e.from[..], &e.to[..])).collect();
        assert_eq!(abc, [("a.rs", "b.rs"), ("a.rs", "c.rs"), ("b.rs", "c.rs"), ("c.rs", "a.rs")]);
    }

    #[test]
    fn module_paths_follow_file_paths() {
        assert_eq!(module_path("lib.rs"), Vec::<String>::new());
        assert_eq!(module_path("main.rs"), Vec::<String>::new());
        assert_eq!(module_path("engine/host/slots.rs"), ["engine", "host", "slots"]);
        assert_eq!(module_path("engine/mod.rs"), ["engine"]);
    }
}
