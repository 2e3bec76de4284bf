# frozen_string_literal: true

# Style 01, interconnect: this process and the node forward every message to each other.
#   ruby -Ilib examples/interconnect.rb tcp://127.0.0.1:7000 [COUNT]
require "berrymq"

$stdout.sync = true
url = ARGV.fetch(0, "tcp://127.0.0.1:7000")
count = ARGV[1]&.to_i

# A class whose instances receive every news:* message, wherever it was sent.
class NewsPrinter
  include BerryMQ::Follower

  def initialize(done)
    @done = done
  end

  following("news:*")
  def print_news(message)
    puts message # e.g. news:flash ["hi"]
    @done.put(message)
  end
end

# A receiver that answers questions (BerryMQ.ask, or berrymq.ask on the node).
BerryMQ.following_function("ruby:question") { |message| "ruby saw #{message.args.first}" }

done = BerryMQ::Queue.new("_printed") # local: the printer tells us it printed one
printer = NewsPrinter.new(done) # keep a reference: followers are held weakly

BerryMQ.interconnect(url)
puts "interconnected with #{url}"
BerryMQ.twitter("ruby:joined", "hello", lang: "ruby") # goes to the node too

if count
  count.times { done.get }
else
  sleep # until Ctrl-C
end
BerryMQ.close_connection
printer.unfollow
