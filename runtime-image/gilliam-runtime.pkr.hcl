# The gilliam runtime image: a current Debian 12 (or Amazon Linux 2023, see README) AMI with
# gilliam-agent, its systemd unit and the `gilliam` service user, provisioned by provision.sh.
#
#   packer init runtime-image/gilliam-runtime.pkr.hcl
#   packer build -var agent=target/release/gilliam-agent -var version=2026.11.1 runtime-image/gilliam-runtime.pkr.hcl
#
# The AMI id lands in image-manifest.json (post-processor below); runtime-image/build.sh prints
# it, and it goes into release.json as `runtime_image`.

packer {
  required_version = ">= 1.9.0"
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "version" {
  type        = string
  description = "Version label of the image (tags and name)."
}

variable "agent" {
  type        = string
  description = "The gilliam-agent binary to install, built for the image's architecture and libc."
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "base_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "Name pattern of the base AMI (Debian's official images)."
}

variable "base_owner" {
  type        = string
  default     = "136693071363"
  description = "Owner of the base AMI: Debian (136693071363) or Amazon (amazon) for al2023-ami-*."
}

variable "ssh_username" {
  type    = string
  default = "admin"
}

variable "etcd_version" {
  type        = string
  default     = ""
  description = "etcd to install for formations with etcd auxiliaries (empty: none)."
}

variable "etcd_sha256" {
  type        = string
  default     = ""
  description = "sha256 of etcd-vVERSION-linux-amd64.tar.gz, from the etcd release's SHA256SUMS."
}

source "amazon-ebs" "runtime" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = var.ssh_username
  ami_name      = "gilliam-runtime-${var.version}-${formatdate("YYYYMMDDhhmmss", timestamp())}"
  encrypt_boot  = true
  imds_support  = "v2.0"

  source_ami_filter {
    filters = {
      name                = var.base_name
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [var.base_owner]
    most_recent = true
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  tags = {
    "gilliam:image"   = "runtime"
    "gilliam:version" = var.version
  }
}

build {
  sources = ["source.amazon-ebs.runtime"]

  provisioner "file" {
    source      = var.agent
    destination = "/tmp/gilliam-agent"
  }

  provisioner "file" {
    source      = "${path.root}/gilliam-agent.service"
    destination = "/tmp/gilliam-agent.service"
  }

  provisioner "file" {
    source      = "${path.root}/README.md"
    destination = "/tmp/README.md"
  }

  provisioner "shell" {
    script          = "${path.root}/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo {{ .Path }} --agent /tmp/gilliam-agent --unit /tmp/gilliam-agent.service --readme /tmp/README.md ${var.etcd_version != "" ? "--etcd-version ${var.etcd_version} --etcd-sha256 ${var.etcd_sha256}" : ""}"
  }

  # Leave no identity of the build instance in the image.
  provisioner "shell" {
    inline = ["sudo cloud-init clean --logs --machine-id || true", "sudo rm -f /tmp/gilliam-agent /tmp/gilliam-agent.service /tmp/README.md"]
  }

  post-processor "manifest" {
    output     = "image-manifest.json"
    strip_path = true
  }
}
