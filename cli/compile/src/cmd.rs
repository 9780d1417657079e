//! `gilliam-compile`: read the three inputs, compile, write the output directory.

use clap::Parser;
use gilliam_compiler::{compile_with, Compiled, Error, FileSink, Inputs, Options, Source};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Compile gilliam.yml + release metadata + stage file into CloudFormation templates,
/// userdata and a published manifest.
#[derive(Debug, Parser)]
#[command(name = "gilliam-compile", version, about, after_help = "Exit codes: 0 success, 1 invalid input, 2 usage error, 3 internal error.")]
pub struct Args {
    /// The application's services (gilliam.yml).
    #[arg(long, value_name = "FILE", required_unless_present = "print_schema")]
    pub app: Option<PathBuf>,
    /// Release metadata (JSON).
    #[arg(long, value_name = "FILE", required_unless_present = "print_schema")]
    pub release: Option<PathBuf>,
    /// Stage file (YAML): where the formation runs.
    #[arg(long, value_name = "FILE", required_unless_present = "print_schema")]
    pub stage: Option<PathBuf>,
    /// Output directory; created if missing. Earlier gilliam output in it is replaced.
    #[arg(long, value_name = "DIR", required_unless_present = "print_schema")]
    pub out: Option<PathBuf>,
    /// Also write each instance's userdata to DIR/userdata/NAME.sh, for review. The launch
    /// templates carry it (the manifest's userdata entries say where); nothing reads these files.
    #[arg(long)]
    pub userdata: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the manifest's JSON Schema and exit.
    #[arg(long)]
    pub print_schema: bool,
}

#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Invalid(String),
    Internal(String),
}

impl CliError {
    /// The message alone, without the program name.
    pub fn message(&self) -> &str {
        match self {
            CliError::Usage(m) | CliError::Invalid(m) | CliError::Internal(m) => m,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Internal(_) => 3,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) => write!(f, "gilliam-compile: {m}"),
            CliError::Invalid(m) => write!(f, "{m}"),
            CliError::Internal(m) => write!(f, "gilliam-compile: {m}\nthis is a bug in gilliam: please report it with the inputs"),
        }
    }
}

pub fn read(path: &Path) -> Result<String, CliError> {
    let max = gilliam_compiler::node::MAX_INPUT_BYTES as u64;
    let cannot = |e: std::io::Error| CliError::Usage(format!("cannot read {}: {e}", path.display()));
    let file = fs::File::open(path).map_err(cannot)?;
    // Read at most one byte past the limit: a huge or endless input is refused, not loaded.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, max + 1), &mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > max {
        return Err(CliError::Usage(format!("{}: larger than the {max} bytes accepted", path.display())));
    }
    String::from_utf8(bytes).map_err(|e| CliError::Usage(format!("{}: not UTF-8 text (byte {})", path.display(), e.utf8_error().valid_up_to())))
}

/// Reads the three inputs, compiles them with as many workers as the machine has cores, and
/// writes the output directory: each file as soon as it is complete, from the worker that
/// rendered it, and the manifest last. Also what `gilliam deploy` and `gilliam plan` compile
/// with. Invalid inputs leave the directory as it was.
pub fn compile_to(app_p: &Path, rel_p: &Path, stage_p: &Path, out: &Path, userdata: bool) -> Result<Compiled, CliError> {
    let (app, rel, stage) = (read(app_p)?, read(rel_p)?, read(stage_p)?);
    let (an, rn, sn) = (app_p.display().to_string(), rel_p.display().to_string(), stage_p.display().to_string());
    let inputs = Inputs { app: Source { name: &an, text: &app }, release: Source { name: &rn, text: &rel }, stage: Source { name: &sn, text: &stage } };
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let dir = Arc::new(OutDir::new(out, userdata));
    let mut compiled = match compile_with(&inputs, &Options { traffic: None, workers, sink: Some(dir.clone()), ..Options::default() }) {
        Ok(c) => c,
        Err(Error::Invalid(d)) => return Err(CliError::Invalid(d.to_string())),
        Err(Error::Internal(m)) => return Err(CliError::Internal(m)),
    };
    dir.finish(&mut compiled)?;
    Ok(compiled)
}

/// The output directory as a compile's sink: cleared of earlier gilliam output when the first
/// file arrives (after the inputs were checked), then written file by file from the workers.
/// The first error is kept, and later files are skipped.
#[derive(Debug)]
pub struct OutDir {
    root: PathBuf,
    /// Also write each instance's userdata (`--userdata`): the templates are kept to read it
    /// back from.
    userdata: bool,
    state: Mutex<OutState>,
}

#[derive(Debug, Default)]
struct OutState {
    /// Directories known to exist: empty until the output directory is prepared.
    dirs: BTreeSet<PathBuf>,
    error: Option<CliError>,
    /// The templates, with `userdata`.
    templates: BTreeMap<String, Vec<u8>>,
}

fn cannot_write(p: &Path, e: std::io::Error) -> CliError {
    CliError::Usage(format!("cannot write {}: {e}", p.display()))
}

impl OutDir {
    pub fn new(root: &Path, userdata: bool) -> OutDir {
        OutDir { root: root.to_path_buf(), userdata, state: Mutex::new(OutState::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the directory and clears what gilliam owns in it, once: the manifest first, so
    /// that no manifest ever names files of another compile, and the subdirectories gilliam
    /// writes, so that no file of an earlier compile survives to be mistaken for this one's.
    fn prepare(&self, st: &mut OutState) -> Result<(), CliError> {
        if !st.dirs.is_empty() {
            return Ok(());
        }
        let out = &self.root;
        fs::create_dir_all(out).map_err(|e| cannot_write(out, e))?;
        let manifest = out.join("manifest.json");
        let _ = fs::remove_file(&manifest);
        for sub in ["templates", "userdata", "runtime", "inputs"] {
            let d = out.join(sub);
            if d.exists() {
                fs::remove_dir_all(&d).map_err(|e| cannot_write(&d, e))?;
            }
        }
        st.dirs.insert(out.clone());
        Ok(())
    }

    /// Where `rel` goes, its parent directory made: `None` once an error is kept.
    fn place(&self, rel: &str) -> Option<PathBuf> {
        let mut st = self.state();
        if st.error.is_some() {
            return None;
        }
        let p = self.root.join(rel);
        let made = self.prepare(&mut st).and_then(|()| match p.parent() {
            Some(parent) if !st.dirs.contains(parent) => {
                fs::create_dir_all(parent).map_err(|e| cannot_write(parent, e))?;
                st.dirs.insert(parent.to_path_buf());
                Ok(())
            }
            _ => Ok(()),
        });
        match made {
            Ok(()) => Some(p),
            Err(e) => {
                st.error = Some(e);
                None
            }
        }
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        let Some(p) = self.place(rel) else { return };
        if let Err(e) = fs::write(&p, bytes) {
            self.state().error.get_or_insert(cannot_write(&p, e));
        }
    }

    /// After the compile: the first error of any write, or, with `userdata`, each instance's
    /// userdata read back from its launch template (the templates are back in `c.files`); then
    /// the manifest, written whole under a temporary name and renamed into place.
    pub fn finish(&self, c: &mut Compiled) -> Result<(), CliError> {
        {
            let mut st = self.state();
            if let Some(e) = st.error.take() {
                return Err(e);
            }
            self.prepare(&mut st)?;
            c.files.append(&mut st.templates);
        }
        if self.userdata {
            for (name, script) in c.userdata().map_err(CliError::Internal)? {
                self.write(&format!("userdata/{name}.sh"), script.as_bytes());
            }
        }
        if let Some(e) = self.state().error.take() {
            return Err(e);
        }
        let (tmp, manifest) = (self.root.join("manifest.json.tmp"), self.root.join("manifest.json"));
        let bytes = c.files.get("manifest.json").ok_or_else(|| CliError::Internal("no manifest produced".into()))?;
        fs::write(&tmp, bytes).map_err(|e| cannot_write(&tmp, e))?;
        fs::rename(&tmp, &manifest).map_err(|e| cannot_write(&manifest, e))
    }
}

impl FileSink for OutDir {
    fn file(&self, path: &str, bytes: &[u8]) {
        self.write(path, bytes);
        if self.userdata && path.starts_with("templates/") {
            self.state().templates.insert(path.to_string(), bytes.to_vec());
        }
    }
}

pub fn run(args: &Args) -> Result<(), CliError> {
    if args.print_schema {
        print!("{}", gilliam_compiler::manifest::SCHEMA);
        return Ok(());
    }
    let need = |p: &Option<PathBuf>, f: &str| p.clone().ok_or_else(|| CliError::Usage(format!("--{f} is required")));
    let (app, release, stage, out) = (need(&args.app, "app")?, need(&args.release, "release")?, need(&args.stage, "stage")?, need(&args.out, "out")?);
    let compiled = compile_to(&app, &release, &stage, &out, args.userdata)?;
    if !args.quiet {
        summary(&out, &compiled);
    }
    // The process ends here (only `main` calls `run`): its memory goes back to the kernel
    // whole, where freeing the compile's allocations one by one and unmapping its templates
    // took milliseconds at 1,000 services.
    std::mem::forget(compiled);
    Ok(())
}

fn summary(out: &Path, c: &Compiled) {
    let m = &c.manifest;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "compiled formation {} release {} into {}", m.formation.name, m.release.number, out.display());
    for s in &m.stacks {
        let how = if s.upload_required { "upload (TemplateURL)" } else { "inline" };
        let _ = writeln!(o, "  stack {:<32} {:>4} resources {:>8} bytes  {how}", s.name, s.resources, s.bytes);
    }
    for s in &m.services {
        let what = match (&s.auxiliary_type, s.port) {
            (Some(t), _) => format!("auxiliary {t}"),
            (None, Some(p)) => format!("http :{p}{}", if s.internal { " (internal)" } else { "" }),
            (None, None) => "worker".into(),
        };
        let _ = writeln!(o, "  service {:<20} {what}", s.name);
    }
    for r in &m.routes {
        let _ = writeln!(o, "  route {:<40} -> {} (group {}, priority {})", r.route, r.service, r.routing_group, r.priority);
    }
    for w in &m.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
}
