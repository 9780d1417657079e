//! Shared helpers for the workspace tests: fixture loading, compiling a fixture case, and
//! locating the tools the tests drive (the built binaries, cfn-lint).

use gilliam_compiler::{compile, Compiled, Inputs, Source};
use std::path::{Path, PathBuf};

/// The fixture cases under `tests/fixtures/`, each a `gilliam.yml`, `release.json` and `stage.yml`.
pub const CASES: &[&str] = &["seed", "full", "split", "names", "image"];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The three input texts of a fixture case.
pub fn load(case: &str) -> [String; 3] {
    let dir = fixtures().join(case);
    ["gilliam.yml", "release.json", "stage.yml"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{case}/{f}: {e}")))
}

pub fn compile_texts(app: &str, release: &str, stage: &str) -> Result<Compiled, gilliam_compiler::Error> {
    compile(&Inputs {
        app: Source { name: "gilliam.yml", text: app },
        release: Source { name: "release.json", text: release },
        stage: Source { name: "stage.yml", text: stage },
    })
}

pub fn compile_case(case: &str) -> Compiled {
    let [a, r, s] = load(case);
    compile_texts(&a, &r, &s).unwrap_or_else(|e| panic!("fixture {case} does not compile:\n{e}"))
}

/// The shared design folder beside the repository (`../shared`), when present.
pub fn shared_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    d.is_dir().then_some(d)
}

/// A tool from the environment variable `var`, else the project's virtual environment
/// `venv` (`.venv`, `.venv-checkov`), else `PATH`.
pub fn tool(var: &str, venv: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let v = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(venv).join("bin").join(name);
    if v.is_file() {
        return Some(v);
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

/// cfn-lint from `$CFN_LINT`, else the project's virtual environment, else `PATH`.
pub fn cfn_lint() -> Option<PathBuf> {
    tool("CFN_LINT", ".venv", "cfn-lint")
}

/// A fresh scratch directory under the target directory, removed first if it exists.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

pub mod engine;

pub mod moto {
    //! A moto_server on a free loopback port, started by the test and stopped when dropped.
    //! Tests talk only to it: static dummy credentials, the instance metadata service disabled.

    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    #[derive(Debug)]
    pub struct Moto {
        child: Child,
        pub url: String,
    }

    /// `moto_server` from `$MOTO_SERVER`, the project's virtual environment, or `PATH`.
    fn moto_server() -> PathBuf {
        if let Some(p) = std::env::var_os("MOTO_SERVER") {
            return PathBuf::from(p);
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
        if venv.is_file() {
            return venv;
        }
        PathBuf::from("moto_server")
    }

    /// moto_server through `scripts/moto_server.py` (which adds the CloudWatch percentiles moto
    /// lacks) with the Python beside it; moto_server itself where there is none.
    fn command() -> Command {
        let server = moto_server();
        let python = server.with_file_name("python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/moto_server.py");
        if python.is_file() && script.is_file() {
            let mut c = Command::new(python);
            c.arg(script);
            c
        } else {
            Command::new(server)
        }
    }

    /// The environment every process that talks to moto gets: dummy credentials, no metadata.
    pub const SAFE_ENV: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_EC2_METADATA_DISABLED", "true")];

    impl Moto {
        pub fn start() -> Moto {
            // The SDK must never look for real credentials or the instance metadata address.
            for (k, v) in SAFE_ENV {
                std::env::set_var(k, v);
            }
            std::env::remove_var("AWS_PROFILE");
            let mut child = command()
                .args(["-H", "127.0.0.1", "-p", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start moto_server: run scripts/setup.sh (it installs moto in .venv) or set MOTO_SERVER");
            let stderr = child.stderr.take().expect("stderr");
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut lines = BufReader::new(stderr).lines();
            let url = loop {
                assert!(Instant::now() < deadline, "moto_server did not report its port");
                let line = lines.next().expect("moto_server exited").expect("read moto_server output");
                if let Some(i) = line.find("http://127.0.0.1:") {
                    break line[i..].split_whitespace().next().expect("url").trim_end_matches('/').to_string();
                }
            };
            // Keep draining its output so that it never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            Moto { child, url }
        }
    }

    /// Access keys of a user made in `account` (moto keeps one set of services per account,
    /// and answers a request in the account whose key signed it): another account to test with.
    pub fn account_keys(url: &str, account: &str) -> (String, String) {
        let addr = url.trim_start_matches("http://");
        let call = |form: &str| {
            let request = format!(
                "POST / HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nx-moto-account-id: {account}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n",
                form.len()
            );
            let (code, body) = crate::engine::http(addr, &request, form.as_bytes()).expect("IAM on moto");
            let body = String::from_utf8_lossy(&body).to_string();
            assert_eq!(code, 200, "{body}");
            body
        };
        call("Action=CreateUser&UserName=gilliam-test&Version=2010-05-08");
        let keys = call("Action=CreateAccessKey&UserName=gilliam-test&Version=2010-05-08");
        let field = |name: &str| keys.split(&format!("<{name}>")).nth(1).and_then(|r| r.split('<').next()).expect(name).to_string();
        (field("AccessKeyId"), field("SecretAccessKey"))
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Compiles the three texts and writes the output into `dir` (cleared first), as
/// `gilliam-compile --userdata` would: with each instance's userdata in `userdata/NAME.sh`,
/// which the agent's tests run.
pub fn compile_into(app: &str, release: &str, stage: &str, dir: &Path) -> Compiled {
    let c = compile_texts(app, release, stage).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(dir);
    let userdata = c.userdata().unwrap_or_else(|e| panic!("{e}"));
    let files = c.files.iter().map(|(p, b)| (p.clone(), b.as_slice())).chain(userdata.iter().map(|(n, s)| (format!("userdata/{n}.sh"), s.as_bytes())));
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }
    c
}

/// A CloudFormation template for a network shaped like a real one, which the preflight checks:
/// a VPC with DNS support and host names, four subnets of 4,096 addresses (a formation of 1,000
/// services with three releases runs 3,000 instances) over two zones, the public ones (outputs
/// `A`, `B`) routed to an internet gateway and the private ones (`C`, `D`) to a NAT gateway;
/// outputs `Vpc` and `A`..`D`. How tests make a network in moto through the seam, which has no
/// EC2 calls of its own.
pub fn network_template(region: &str) -> String {
    let mut res = serde_json::json!({
        "Vpc": { "Type": "AWS::EC2::VPC", "Properties": { "CidrBlock": "10.0.0.0/16", "EnableDnsSupport": true, "EnableDnsHostnames": true } },
        "Igw": { "Type": "AWS::EC2::InternetGateway", "Properties": {} },
        "IgwAttachment": { "Type": "AWS::EC2::VPCGatewayAttachment", "Properties": { "VpcId": { "Ref": "Vpc" }, "InternetGatewayId": { "Ref": "Igw" } } },
        "PublicRoutes": { "Type": "AWS::EC2::RouteTable", "Properties": { "VpcId": { "Ref": "Vpc" } } },
        "PublicDefault": { "Type": "AWS::EC2::Route", "DependsOn": "IgwAttachment", "Properties": { "RouteTableId": { "Ref": "PublicRoutes" }, "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": { "Ref": "Igw" } } },
        "NatAddress": { "Type": "AWS::EC2::EIP", "Properties": { "Domain": "vpc" } },
        "Nat": { "Type": "AWS::EC2::NatGateway", "Properties": { "SubnetId": { "Ref": "A" }, "AllocationId": { "Fn::GetAtt": ["NatAddress", "AllocationId"] } } },
        "PrivateRoutes": { "Type": "AWS::EC2::RouteTable", "Properties": { "VpcId": { "Ref": "Vpc" } } },
        "PrivateDefault": { "Type": "AWS::EC2::Route", "Properties": { "RouteTableId": { "Ref": "PrivateRoutes" }, "DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": { "Ref": "Nat" } } },
    });
    let mut outputs = serde_json::Map::new();
    for (i, name) in ["A", "B", "C", "D"].iter().enumerate() {
        res[*name] = serde_json::json!({ "Type": "AWS::EC2::Subnet", "Properties": { "VpcId": { "Ref": "Vpc" }, "CidrBlock": format!("10.0.{}.0/20", i * 16), "AvailabilityZone": format!("{region}{}", ["a", "b"][i % 2]) } });
        let table = if i < 2 { "PublicRoutes" } else { "PrivateRoutes" };
        res[format!("{name}Routes")] = serde_json::json!({ "Type": "AWS::EC2::SubnetRouteTableAssociation", "Properties": { "SubnetId": { "Ref": name }, "RouteTableId": { "Ref": table } } });
        outputs.insert(name.to_string(), serde_json::json!({ "Value": { "Ref": name } }));
    }
    for name in ["Vpc", "PublicRoutes", "PrivateRoutes"] {
        outputs.insert(name.into(), serde_json::json!({ "Value": { "Ref": name } }));
    }
    serde_json::json!({ "Resources": res, "Outputs": outputs }).to_string()
}

/// What moto's CloudFormation leaves out of [`network_template`] (seen with moto 5.2.5: it
/// ignores `EnableDnsHostnames` on a VPC and makes no `SubnetRouteTableAssociation`), done
/// through EC2 on the emulator at `url`; `outputs` are the template's stack outputs. Real
/// CloudFormation needs none of it.
pub async fn finish_network(url: &str, region: &str, outputs: &std::collections::BTreeMap<String, String>) {
    use gilliam_ec2::Params;
    let ec2 = ec2(url, region);
    let vpc = &outputs["Vpc"];
    for attr in ["EnableDnsSupport", "EnableDnsHostnames"] {
        ec2.call("ModifyVpcAttribute", &Params::new().set("VpcId", vpc).set(format!("{attr}.Value"), "true")).await.expect(attr);
    }
    for (subnet, table) in [("A", "PublicRoutes"), ("B", "PublicRoutes"), ("C", "PrivateRoutes"), ("D", "PrivateRoutes")] {
        let done = ec2.call_all("DescribeRouteTables", &Params::new().list("RouteTableId", &[&outputs[table]]), "routeTableSet").await.expect("route table");
        if done.iter().flat_map(|t| t.items("associationSet")).any(|a| a.text("subnetId") == Some(outputs[subnet].as_str())) {
            continue;
        }
        let associate = Params::new().set("SubnetId", &outputs[subnet]).set("RouteTableId", &outputs[table]);
        ec2.call("AssociateRouteTable", &associate).await.expect("associate route table");
    }
}

/// The narrow EC2 client against the emulator at `url`, with the tests' dummy credentials.
pub fn ec2(url: &str, region: &str) -> gilliam_ec2::Ec2 {
    use aws_credential_types::provider::SharedCredentialsProvider;
    let creds = aws_credential_types::Credentials::new("testing", "testing", None, None, "tests");
    gilliam_ec2::Ec2::with(url, region, Some(SharedCredentialsProvider::new(creds)), 3).expect("EC2 client for the emulator")
}

pub mod receiver {
    //! An HTTP receiver on a free loopback port that answers 200 to every request and keeps the
    //! bodies of what it was sent: where tests point webhooks and SNS HTTP subscriptions.

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone)]
    pub struct Receiver {
        pub url: String,
        bodies: Arc<Mutex<Vec<(String, String)>>>,
    }

    impl Receiver {
        pub fn start() -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let url = format!("http://{}", listener.local_addr().expect("address"));
            let bodies: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
            let kept = bodies.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let kept = kept.clone();
                    std::thread::spawn(move || {
                        let mut reader = BufReader::new(stream);
                        let mut first = String::new();
                        if reader.read_line(&mut first).is_err() {
                            return;
                        }
                        let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                                break;
                            }
                            if let Some((k, v)) = line.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                        let mut body = vec![0; len];
                        let _ = reader.read_exact(&mut body);
                        kept.lock().expect("bodies").push((path, String::from_utf8_lossy(&body).into_owned()));
                        let mut stream = reader.into_inner();
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    });
                }
            });
            Receiver { url, bodies }
        }

        /// (path, body) of every request so far, in arrival order.
        pub fn received(&self) -> Vec<(String, String)> {
            self.bodies.lock().expect("bodies").clone()
        }
    }
}
