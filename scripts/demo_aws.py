"""Prepares the local demo on moto (never on real AWS): a VPC with public and private subnets,
an artifact bucket with a small artifact, the stage file and two release files.

Usage: demo_aws.py ENDPOINT OUTDIR   (ENDPOINT must be a loopback URL)"""
import hashlib, json, os, sys, urllib.parse

import boto3

endpoint, out = sys.argv[1], sys.argv[2]
host = urllib.parse.urlparse(endpoint).hostname
if host not in ("127.0.0.1", "localhost", "::1"):
    sys.exit(f"demo_aws.py: refusing {endpoint}: the demo only talks to a local emulator")
region = "eu-west-1"
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region)
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)

# A network shaped like a real one, which gilliam's preflight checks: DNS on, two public
# subnets routed to an internet gateway, two private ones routed to a NAT gateway.
vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
subnets = [
    ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=region + "ab"[i % 2])["Subnet"]["SubnetId"]
    for i in range(4)
]
igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
public = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
ec2.create_route(RouteTableId=public, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
nat = ec2.create_nat_gateway(SubnetId=subnets[0], AllocationId=eip)["NatGateway"]["NatGatewayId"]
private = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
ec2.create_route(RouteTableId=private, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
for subnet, table in zip(subnets, [public, public, private, private]):
    ec2.associate_route_table(SubnetId=subnet, RouteTableId=table)
bucket = "gilliam-demo-artifacts"
s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
artifact = b"demo artifact: a tarball would be here\n"
sha = hashlib.sha256(artifact).hexdigest()
s3.put_object(Bucket=bucket, Key="shop/app.tar.gz", Body=artifact)

stage = open(os.path.join(os.path.dirname(__file__), "..", "examples", "quickstart", "stage.yml")).read()
stage = stage.replace("vpc-0a1b2c3d4e5f60718", vpc)
for old, new in zip(["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60011", "subnet-0a1b2c3d4e5f60012"], subnets):
    stage = stage.replace(old, new)
stage = stage.replace("outputs_bucket: gilliam-quickstart-artifacts", "outputs_bucket: gilliam-demo-outputs")
# No request is ever in flight on a local AWS: nothing to wait for before scaling a release down.
stage += "deregistration_delay: 0s\n"
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "stage.yml"), "w").write(stage)
for n in (1, 2):
    release = json.load(open(os.path.join(os.path.dirname(__file__), "..", "examples", "quickstart", "release.json")))
    release.update(number=n, revision=f"demo{n}", artifact={"url": f"s3://{bucket}/shop/app.tar.gz", "sha256": sha})
    json.dump(release, open(os.path.join(out, f"release-{n}.json"), "w"), indent=2)
print(f"moto: VPC {vpc}, subnets {', '.join(subnets)}, artifact s3://{bucket}/shop/app.tar.gz")
